//! One launch, from the `udssv2://` link to the end: trust, exchange, script, tunnels, and
//! the rules of docs/launcher-scripts.md §3 "When the launcher ends".

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portcullis_link::client::{ClientConfig, Forwarder, SessionEnd, TunnelAddress, test_server};
use portcullis_proto::api::LaunchUrl;
use portcullis_proto::payload::VerifyingKey;
use portcullis_proto::tunnel::{EndReason, TunnelParams, TunnelProtocol, derive_tunnel_secret};
use portcullis_proto::{SharedSecret, TicketId};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::watch;

use crate::exchange::{BrokerClient, Launch};
use crate::failure::Failure;
use crate::paths::Dirs;
use crate::script::{self, HostFuture, ScriptEnv, ScriptHost, ScriptLimits, TunnelOptions};
use crate::ssh_key_pair::SshKeyPair;
use crate::stop::StopReason;
use crate::trust::TrustStore;
use crate::ui::Ui;

/// How long the broker may take per request.
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `startup_time_ms` of a tunnel (docs/launcher-scripts.md §4.2).
const DEFAULT_STARTUP: Duration = Duration::from_secs(30);
/// How long a tunnel server has to answer the `Test` health check before a tunnel opens.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What a launch needs besides the link.
#[derive(Debug)]
pub struct LaunchOptions {
    /// The `udssv2://` link.
    pub url: String,
    /// A fingerprint the user confirmed out of band, for a first contact.
    pub trust_fingerprint: Option<String>,
    /// Extra CA certificates for the broker and the tunnel servers.
    pub ca_file: Option<PathBuf>,
    /// Where the trust file is.
    pub dirs: Dirs,
    /// The longest wait while the service is being prepared.
    pub max_wait: Duration,
    /// The script's bounds.
    pub limits: ScriptLimits,
    /// The script's environment (PATH).
    pub env: ScriptEnv,
}

/// How a launch that got its instructions ends.
#[derive(Debug)]
enum End {
    /// docs/launcher-scripts.md §3: nothing keeps the launcher any more.
    Done,
    /// The user pressed Disconnect or closed the window.
    Disconnected,
    /// A signal or a panic ([`StopReason`]).
    Stopped(StopReason),
    /// A tunnel failed: its first error.
    TunnelLost(String),
    /// The tunnel server ended a session because an administrator asked (the user was
    /// not told yet: the failure says it).
    EndedByAdministrator,
}

/// Runs one launch to its end.
pub async fn launch(options: LaunchOptions, ui: Arc<dyn Ui>) -> Result<(), Failure> {
    launch_until(options, ui, std::future::pending()).await
}

/// Runs one launch to its end, or until `stop` resolves (a signal or a panic,
/// [`crate::stop::StopWatch`]). Stopped, disconnected by the user, or ending because a
/// tunnel or the script failed, it ends its tunnel sessions (`EndSession`), kills the
/// programs the script started (they cannot go on without their tunnels) and removes the
/// script's files.
pub async fn launch_until(
    options: LaunchOptions,
    ui: Arc<dyn Ui>,
    stop: impl Future<Output = StopReason> + Send + 'static,
) -> Result<(), Failure> {
    let mut stop = Box::pin(stop);
    // Until the instructions arrive nothing runs: a stop ends the launch at once.
    let prepared = tokio::select! {
        prepared = prepare(&options, ui.as_ref()) => prepared?,
        reason = &mut stop => return Err(stopped(reason)),
    };
    let Prepared { launch, ca_file } = prepared;

    // The only tunnel ticket a script may open; a malformed `tunnel` member is the broker's
    // fault, said before any script runs.
    let expected_ticket = TunnelParams::of_launch(&launch.params)
        .map_err(|error| Failure::tampered(format_args!("the tunnel member ({error})")))?
        .map(|tunnel| tunnel.ticket);
    let tunnels = Arc::new(Tunnels::new(
        launch.kem_secret,
        expected_ticket,
        ca_file,
        Arc::clone(&ui),
    ));
    // The script and the wait run as a task of their own, so that a panic inside them
    // (logged by the panic hook) still ends the sessions here; the programs the script
    // started died with the task (they are killed when dropped).
    let running = Running {
        script: launch.script,
        params: launch.params,
        ssh_key: launch.ssh_key,
        limits: options.limits,
        env: options.env,
    };
    let run = tokio::spawn(run_script(running, Arc::clone(&tunnels), ui, stop));
    match run.await {
        Ok(result) => result,
        Err(_) => {
            tunnels.end_all().await;
            Err(stopped(StopReason::Panic))
        }
    }
}

/// What [`run_script`] runs: the verified script, its params and bounds.
struct Running {
    script: String,
    params: serde_json::Value,
    ssh_key: SshKeyPair,
    limits: ScriptLimits,
    env: ScriptEnv,
}

/// Runs the script and waits until the launch ends (docs/launcher-scripts.md §3), then
/// ends the tunnels, kills what the script started unless the launch ended by itself, and
/// removes the script's files.
async fn run_script(
    running: Running,
    tunnels: Arc<Tunnels>,
    ui: Arc<dyn Ui>,
    mut stop: Pin<Box<impl Future<Output = StopReason> + Send>>,
) -> Result<(), Failure> {
    let Running {
        script: source,
        params,
        ssh_key,
        limits,
        env,
    } = running;
    // A stop or a failed tunnel while the script runs (a `waitUntilClosed` window is
    // open) aborts the script: its programs are killed, its files removed.
    let mut aborted_by = None;
    let settled = script::run_until(
        &source,
        &params,
        Arc::new(Host(Arc::clone(&tunnels), Arc::new(ssh_key))) as Arc<dyn ScriptHost>,
        &limits,
        &env,
        async {
            aborted_by = Some(tokio::select! {
                reason = &mut stop => End::Stopped(reason),
                error = tunnels.failed() => End::TunnelLost(error),
            });
        },
    )
    .await;
    let mut settled = match settled {
        Ok(settled) => settled,
        Err(error) => {
            tunnels.end_all().await;
            return Err(match aborted_by {
                Some(end) => failure_of(end, Vec::new()).unwrap_or_else(|| {
                    Failure::internal("The launch ended before its script settled.")
                }),
                None => Failure::script(format!("The launch script failed: {error}")),
            });
        }
    };
    // The launch runs on (a client program, open tunnels): a window says so, with
    // Disconnect.
    let service = params["name"].as_str().unwrap_or("the service");
    let keeps_running = settled.apps_running() || tunnels.any_open();
    let connected = if keeps_running && !tunnels.disconnect_requested() {
        ui.connected(service)
    } else {
        Box::pin(std::future::pending())
    };
    let end = {
        let apps = settled.wait_for_apps();
        tokio::pin!(apps);
        tokio::pin!(connected);
        let mut apps_done = false;
        loop {
            let now = Instant::now();
            let next_deadline = tunnels.close_idle_listeners(now);
            if let Some(error) = tunnels.first_error() {
                break End::TunnelLost(error);
            }
            // A `Portcullis.waitUntilClosed` window closed: disconnect at once.
            if tunnels.disconnect_requested() {
                break End::Disconnected;
            }
            // An administrator ended a session: the launch is over, whatever else runs.
            if tunnels.ended_by_administrator() {
                break End::EndedByAdministrator;
            }
            // The tunnel server ended every session (the user was told why, and the
            // listeners are closed): nothing is left to serve.
            if tunnels.report_ended_sessions() {
                break End::Done;
            }
            if apps_done && tunnels.all_quiet(now) {
                // The local connections may have closed because an administrator ended
                // the session: then that is how the launch ends.
                if tunnels.ended_by_administrator() {
                    break End::EndedByAdministrator;
                }
                break End::Done;
            }
            tokio::select! {
                () = &mut apps, if !apps_done => apps_done = true,
                () = &mut connected => break End::Disconnected,
                reason = &mut stop => break End::Stopped(reason),
                () = tunnels.changed() => {}
                () = sleep_until_some(next_deadline) => {}
            }
        }
    };
    let errors = tunnels.end_all().await;
    if !matches!(end, End::Done) || !errors.is_empty() {
        settled.kill_started().await;
    }
    settled.cleanup().await;
    match failure_of(end, errors) {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}

/// The failure a launch's end is, if any (`errors`: what the tunnels reported).
fn failure_of(end: End, errors: Vec<String>) -> Option<Failure> {
    match end {
        End::Stopped(reason) => Some(stopped(reason)),
        End::TunnelLost(error) => Some(tunnel_failure(&error)),
        End::EndedByAdministrator => Some(Failure::ended_by_administrator()),
        End::Done | End::Disconnected => errors.first().map(|error| tunnel_failure(error)),
    }
}

fn tunnel_failure(error: &str) -> Failure {
    Failure::tunnel(format!(
        "The tunnel failed: {error}. The launcher ended the connection and the programs it \
         started; start the connection again from the portal."
    ))
}

fn stopped(reason: StopReason) -> Failure {
    Failure::internal(reason.sentence())
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// A verified launch and the CA file its tunnels trust besides the roots.
struct Prepared {
    launch: Launch,
    ca_file: Option<PathBuf>,
}

/// From the link to verified instructions: trust, exchange, verification.
async fn prepare(options: &LaunchOptions, ui: &dyn Ui) -> Result<Prepared, Failure> {
    let url = LaunchUrl::parse(options.url.trim()).map_err(|error| {
        Failure::usage(format!(
            "That is not a Portcullis link ({error}); expected udssv2://HOST/TICKET/SCRAMBLER. \
             Start the connection from the portal."
        ))
    })?;
    let host = url.host().to_owned();
    tracing::info!(broker = %host, ticket = %url.ticket(), "launch");
    let mut store = TrustStore::load(&options.dirs.trust_file())
        .map_err(|error| Failure::usage(error.to_string()))?;
    // The CA given on the command line, else the one pinned with the host's key.
    let ca_file = match &options.ca_file {
        Some(path) => Some(path.clone()),
        None => store.ca_file(&host).map(std::path::Path::to_path_buf),
    };
    let client = BrokerClient::new(&host, ca_file.as_deref(), BROKER_TIMEOUT)?;
    let pinned = trusted_key(options, &mut store, &client, &host, ui).await?;

    let mut progress = |percent: u8| ui.progress("Preparing the service", percent);
    let exchanged = client
        .exchange(
            url.ticket(),
            url.scrambler(),
            &pinned,
            options.max_wait,
            &mut progress,
        )
        .await;
    ui.progress_done();
    let launch = match exchanged {
        Ok(launch) => launch,
        Err(failure) if failure.is_signature_failure() => {
            // A rotated broker key shows as a signature failure: say so if it is that.
            return Err(match client.broker_key().await {
                Ok(presented) if presented.fingerprint() != pinned.fingerprint() => {
                    Failure::key_changed(
                        crate::trust::TrustError::Changed {
                            host: host.clone(),
                            pinned: pinned.fingerprint(),
                            presented: presented.fingerprint(),
                        }
                        .to_string(),
                    )
                }
                _ => failure,
            });
        }
        Err(failure) => return Err(failure),
    };
    Ok(Prepared { launch, ca_file })
}

/// The pinned key of `host`, or a first contact confirmed by fingerprint or by the user.
async fn trusted_key(
    options: &LaunchOptions,
    store: &mut TrustStore,
    client: &BrokerClient,
    host: &str,
    ui: &dyn Ui,
) -> Result<VerifyingKey, Failure> {
    if let Some(key) = store.get(host) {
        return Ok(key.clone());
    }
    let presented = client.broker_key().await?;
    let fingerprint = presented.fingerprint();
    let confirmed = match &options.trust_fingerprint {
        Some(expected) => {
            if normalize_fingerprint(expected) != fingerprint {
                return Err(Failure::key_changed(format!(
                    "The broker {host} presents the key fingerprint {fingerprint}, not the \
                     {expected} you gave. Do not connect; ask your administrator."
                )));
            }
            true
        }
        None => ui.confirm_new_broker(host, &fingerprint).await,
    };
    if !confirmed {
        return Err(Failure::untrusted(format!(
            "The broker {host} is not trusted yet. Check its key fingerprint {fingerprint} \
             with your administrator (the portal shows it), then run the link again with \
             --trust-fingerprint {fingerprint}."
        )));
    }
    store
        .pin(host, presented.clone())
        .map_err(|error| Failure::key_changed(error.to_string()))?;
    store
        .save()
        .map_err(|error| Failure::internal(error.to_string()))?;
    tracing::info!(broker = %host, %fingerprint, "broker key pinned");
    Ok(presented)
}

/// Fingerprints as people type them: case and `:`/space separators do not matter.
fn normalize_fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .collect::<String>()
        .to_ascii_lowercase()
}

/// One local tunnel endpoint.
struct Endpoint {
    forwarder: Forwarder,
    startup_until: Instant,
    keep_listening: bool,
    /// The user was told that the session ended.
    end_reported: bool,
}

/// What the user reads when the tunnel server ended a session the launcher held: one
/// sentence, naming why when the server said.
fn session_ended_sentence(end: SessionEnd) -> String {
    let why = match end {
        SessionEnd::Ended(EndReason::IdleTimeout) => {
            "it was not used for longer than the tunnel server allows".to_owned()
        }
        SessionEnd::Ended(EndReason::MaxDuration) => {
            "it reached the longest time the tunnel server allows".to_owned()
        }
        SessionEnd::Ended(EndReason::ShuttingDown) => "the tunnel server was shut down".to_owned(),
        SessionEnd::Ended(reason) => format!("the tunnel server ended it ({reason})"),
        SessionEnd::Unknown => "the tunnel server no longer knows it (it was restarted, or this \
                                computer could not reach it for a while)"
            .to_owned(),
    };
    format!("The connection has ended because {why}; start it again from the portal.")
}

/// The tunnels a script opened.
struct Tunnels {
    kem_secret: SharedSecret,
    /// The params' tunnel ticket, if any: the only one a script may open.
    expected_ticket: Option<TicketId>,
    ca_file: Option<PathBuf>,
    ui: Arc<dyn Ui>,
    endpoints: Mutex<Vec<Endpoint>>,
    /// Bumped by every event the end conditions depend on: a tunnel opened, a local
    /// connection accepted or closed, a tunnel error, the user's Disconnect.
    events: watch::Sender<()>,
    disconnect: AtomicBool,
}

impl Tunnels {
    fn new(
        kem_secret: SharedSecret,
        expected_ticket: Option<TicketId>,
        ca_file: Option<PathBuf>,
        ui: Arc<dyn Ui>,
    ) -> Self {
        Self {
            kem_secret,
            expected_ticket,
            ca_file,
            ui,
            endpoints: Mutex::new(Vec::new()),
            events: watch::Sender::new(()),
            disconnect: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Endpoint>> {
        self.endpoints
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Resolves at the next event (a receiver made now sees only later ones).
    fn changed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut events = self.events.subscribe();
        async move {
            // An error means the sender is gone with the tunnels: nothing will change.
            if events.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves with the first tunnel error, whenever it happens.
    async fn failed(&self) -> String {
        loop {
            let changed = self.changed();
            if let Some(error) = self.first_error() {
                return error;
            }
            changed.await;
        }
    }

    /// The first error a tunnel reported, if any.
    fn first_error(&self) -> Option<String> {
        self.lock()
            .iter()
            .find_map(|endpoint| endpoint.forwarder.errors().into_iter().next())
    }

    /// Closes the listeners whose startup time passed without a first connection; the
    /// next startup deadline still ahead, if any.
    fn close_idle_listeners(&self, now: Instant) -> Option<Instant> {
        let mut next = None;
        for endpoint in self.lock().iter() {
            if now < endpoint.startup_until {
                next = Some(next.map_or(endpoint.startup_until, |n: Instant| {
                    n.min(endpoint.startup_until)
                }));
            } else if !endpoint.keep_listening && endpoint.forwarder.accepted_connections() == 0 {
                endpoint.forwarder.stop_listening();
            }
        }
        next
    }

    /// Whether an administrator ended a session of this launch (authenticated: the tunnel
    /// server's `SessionEnded` or `Error` record said so).
    fn ended_by_administrator(&self) -> bool {
        self.lock().iter().any(|endpoint| {
            endpoint.forwarder.session_end()
                == Some(SessionEnd::Ended(EndReason::EndedByAdministrator))
        })
    }

    /// Tells the user, once per endpoint, that its session ended; whether every endpoint's
    /// session has ended (and there was at least one). An end by an administrator is told
    /// by the launch's failure instead.
    fn report_ended_sessions(&self) -> bool {
        let mut endpoints = self.lock();
        for endpoint in endpoints.iter_mut() {
            if let (false, Some(end)) = (endpoint.end_reported, endpoint.forwarder.session_end()) {
                endpoint.end_reported = true;
                if end == SessionEnd::Ended(EndReason::EndedByAdministrator) {
                    continue;
                }
                tracing::info!(%end, "tunnel session ended");
                self.ui.message(&session_ended_sentence(end));
            }
        }
        !endpoints.is_empty() && endpoints.iter().all(|endpoint| endpoint.end_reported)
    }

    /// Resolves once every endpoint's session ended (telling the user as each one does).
    async fn every_session_ended(&self) {
        loop {
            let changed = self.changed();
            if self.report_ended_sessions() {
                return;
            }
            changed.await;
        }
    }

    /// Whether any tunnel was opened.
    fn any_open(&self) -> bool {
        !self.lock().is_empty()
    }

    /// The user closed a `Portcullis.waitUntilClosed` window.
    fn disconnect_requested(&self) -> bool {
        self.disconnect.load(Ordering::SeqCst)
    }

    /// Every startup time passed and no connection is open.
    fn all_quiet(&self, now: Instant) -> bool {
        self.lock().iter().all(|endpoint| {
            now >= endpoint.startup_until && endpoint.forwarder.open_connections() == 0
        })
    }

    /// Ends every session (`EndSession`); returns the tunnel errors seen.
    async fn end_all(&self) -> Vec<String> {
        let endpoints: Vec<Endpoint> = std::mem::take(&mut *self.lock());
        let mut errors = Vec::new();
        for endpoint in endpoints {
            errors.extend(endpoint.forwarder.errors());
            if let Err(error) = endpoint.forwarder.end_session().await {
                tracing::info!(%error, "ending the tunnel session");
            }
        }
        errors
    }

    async fn open(&self, options: TunnelOptions) -> Result<SocketAddr, String> {
        if options.protocol != TunnelProtocol::V1 {
            return Err(format!(
                "this launcher speaks tunnel protocol v1 only, not {}",
                options.protocol
            ));
        }
        if self.expected_ticket.as_ref() != Some(&options.ticket) {
            return Err("the script asked for a tunnel ticket this launch did not receive".into());
        }
        let ticket = options.ticket.clone();
        let loopback = if options.enable_ipv6 {
            IpAddr::from(Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::from(Ipv4Addr::LOCALHOST)
        };
        let listen = SocketAddr::new(loopback, options.local_port.unwrap_or(0));
        let secret = derive_tunnel_secret(&self.kem_secret, &ticket).map_err(|e| e.to_string())?;
        let tls = if options.tls {
            Some(tunnel_tls(&options, self.ca_file.as_deref())?)
        } else {
            None
        };
        let address = TunnelAddress {
            host: options.addr.clone(),
            port: options.port,
            tls,
        };
        test_server(&address, TEST_TIMEOUT).await.map_err(|error| {
            format!(
                "the tunnel server {}:{} does not answer ({error})",
                options.addr, options.port
            )
        })?;
        let forwarder =
            Forwarder::start_at(listen, address, ticket, secret, ClientConfig::default())
                .await
                .map_err(|error| match options.local_port {
                    Some(port) if error.kind() == std::io::ErrorKind::AddrInUse => format!(
                        "the local port {port} is taken by another program; close it and \
                         connect again"
                    ),
                    _ => format!("cannot open a local listener on {listen}: {error}"),
                })?;
        let local = forwarder.local_addr();
        let startup = match options.startup_time_ms {
            0 => DEFAULT_STARTUP,
            ms => Duration::from_millis(ms),
        };
        // The forwarder's events are the launch's events.
        let mut forwarder_events = forwarder.events();
        let events = self.events.clone();
        tokio::spawn(async move {
            while forwarder_events.changed().await.is_ok() {
                events.send_replace(());
            }
        });
        self.lock().push(Endpoint {
            forwarder,
            startup_until: Instant::now() + startup,
            keep_listening: options.keep_listening_after_timeout,
            end_reported: false,
        });
        self.events.send_replace(());
        tracing::info!(tunnel_server = %options.addr, %local, "tunnel ready");
        Ok(local)
    }
}

/// A tunnel connection's TLS: the client configuration and the name to verify.
type TunnelTls = (
    Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
);

/// rustls for a tunnel connection: the roots the broker connection trusts — the
/// operating system's (a company CA installed there) and Mozilla's — and `ca_file`, the
/// tunnel server's host as the name; X25519MLKEM768 preferred (aws-lc-rs's default
/// order). The certificate is always checked, whatever the script asks.
fn tunnel_tls(
    options: &TunnelOptions,
    ca_file: Option<&std::path::Path>,
) -> Result<TunnelTls, String> {
    if !options.check_certificate {
        return Err(
            "the script asked not to check the tunnel server's certificate; this launcher \
             always checks it"
                .into(),
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // Unreadable system certificates are skipped, as the broker connection skips them.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate =
                certificate.map_err(|error| format!("{}: {error}", path.display()))?;
            roots
                .add(certificate)
                .map_err(|error| format!("{}: {error}", path.display()))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|error| error.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(options.addr.clone())
        .map_err(|error| format!("{}: {error}", options.addr))?;
    Ok((Arc::new(config), name))
}

/// The script's host: the tunnels, shared with the futures the script awaits, and the SSH
/// key pair of the exchange.
#[derive(Clone)]
struct Host(Arc<Tunnels>, Arc<SshKeyPair>);

impl ScriptHost for Host {
    fn ssh_key(&self) -> Option<&SshKeyPair> {
        Some(&self.1)
    }

    fn start_tunnel(&self, options: TunnelOptions) -> HostFuture<Result<SocketAddr, String>> {
        let tunnels = Arc::clone(&self.0);
        Box::pin(async move { tunnels.open(options).await })
    }

    fn message(&self, text: &str) {
        self.0.ui.message(text);
    }

    fn wait_until_closed(&self, text: &str) -> HostFuture<()> {
        let closed = self.0.ui.wait_until_closed(text);
        let tunnels = Arc::clone(&self.0);
        Box::pin(async move {
            // Until the user disconnects, or until the tunnel server ended every session
            // (then the window has nothing left to keep open; the user was told why).
            tokio::select! {
                () = closed => {
                    tunnels.disconnect.store(true, Ordering::SeqCst);
                    tunnels.events.send_replace(());
                }
                () = tunnels.every_session_ended() => {}
            }
        })
    }
}
