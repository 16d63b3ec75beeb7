//! The state one broker shares between its requests. Passed explicitly (`Arc<AppState>`),
//! so a test can run two brokers in one process.

use portcullis_proto::SourceKey;
use portcullis_proto::payload::SigningKey;

use std::sync::Arc;

use crate::clock::{Clock, Millis};
use crate::config::BrokerConfig;
use crate::control::ControlHub;
use crate::credentials::CredentialKeys;
use crate::metrics::Metrics;
use crate::oidc::Providers;
use crate::password::PasswordChecks;
use crate::proof_limit::{ProofBudgets, ProofLimiter};
use crate::rate_limit::RateLimiter;
use crate::readiness::ReadinessCache;
use crate::refusal_log::RefusalLog;
use crate::scripts::ScriptSet;
use crate::store::Store;

/// Everything a request handler needs.
pub struct AppState {
    /// The validated configuration.
    pub config: BrokerConfig,
    /// The database.
    pub store: Store,
    /// The broker's ML-DSA-65 key: signs scripts and payloads.
    pub signing_key: SigningKey,
    /// The launcher scripts, signed at load.
    pub scripts: ScriptSet,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Login attempts per user name.
    pub logins_per_user: RateLimiter<String>,
    /// Login attempts per client address (an IPv6 address's /64, see [`SourceKey`]).
    pub logins_per_ip: RateLimiter<SourceKey>,
    /// The password checks running at once.
    pub password_checks: PasswordChecks,
    /// Targets that answered the readiness check recently.
    pub readiness: ReadinessCache,
    /// Wrong tunnel-handshake proofs per source address, ticket, user and tunnel server.
    pub wrong_proofs: ProofLimiter,
    /// The log lines of refused tunnel-server requests, aggregated per reason.
    pub refusal_log: RefusalLog,
    /// The OpenID Connect providers users may sign in with.
    pub oidc: Providers,
    /// The tunnel servers' held control requests (docs/protocol.md §7.8).
    pub control: Arc<ControlHub>,
    /// The credential key and the SSH CA (docs/protocol.md §6.8).
    pub credentials: CredentialKeys,
    clock: Clock,
}

impl AppState {
    /// Assembles the state; `metrics` should be the ones the store reports to (see
    /// [`StoreOptions::metrics`](crate::store::StoreOptions::metrics)); `clock` is
    /// [`system_clock`](crate::clock::system_clock) outside tests; `oidc` the providers of
    /// `config.auth`; `credentials` the keys of [`crate::credentials`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: BrokerConfig,
        store: Store,
        signing_key: SigningKey,
        scripts: ScriptSet,
        metrics: Metrics,
        oidc: Providers,
        credentials: CredentialKeys,
        clock: Clock,
    ) -> Self {
        let store_for_control = store.clone();
        let per_user = config.limits.login_attempts_per_minute_per_user;
        let per_ip = config.limits.login_attempts_per_minute_per_ip;
        let password_checks = PasswordChecks::new(config.limits.concurrent_password_checks);
        let wrong_proofs = ProofLimiter::new(ProofBudgets {
            per_source: config.tickets.wrong_proofs_per_minute_per_source,
            per_ticket: config.tickets.wrong_proofs_per_minute_per_ticket,
            per_user: config.tickets.wrong_proofs_per_minute_per_user,
            per_server: config.tickets.wrong_proofs_per_minute_per_tunnel_server,
        });
        Self {
            config,
            store,
            signing_key,
            scripts,
            metrics,
            logins_per_user: RateLimiter::new(per_user),
            logins_per_ip: RateLimiter::new(per_ip),
            password_checks,
            readiness: ReadinessCache::default(),
            wrong_proofs,
            refusal_log: RefusalLog::default(),
            oidc,
            control: Arc::new(ControlHub::new(store_for_control, clock.clone())),
            credentials,
            clock,
        }
    }

    /// The current time in Unix milliseconds.
    pub fn now(&self) -> Millis {
        (self.clock)()
    }
}

impl core::fmt::Debug for AppState {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}
