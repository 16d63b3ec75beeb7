//! The provider's discovery document and keys, cached: fetched at the first sign-in,
//! kept an hour, and fetched again at most every few seconds after a failure. The key set
//! is refetched on a token signed with an unknown key id, at most once a minute, so that
//! nobody can make the broker fetch keys on every request.

use std::time::{Duration, Instant};

use openidconnect::IssuerUrl;
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use tokio::sync::Mutex;

use super::http::BoundedHttp;

/// How long discovery is trusted before it is fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// After a failed discovery, requests are answered "unreachable" this long without trying.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// The key set is refetched for an unknown key id at most this often.
const KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Cache {
    metadata: Option<(CoreProviderMetadata, Instant)>,
    failed_at: Option<Instant>,
    keys_fetched_at: Option<Instant>,
}

/// One provider's cached discovery. One fetch at a time: concurrent sign-ins wait for it.
pub(crate) struct Discovery {
    cache: Mutex<Cache>,
    key_refetch_interval: Duration,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            cache: Mutex::default(),
            key_refetch_interval: KEY_REFETCH_INTERVAL,
        }
    }
}

impl core::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

impl Discovery {
    /// The provider's metadata with its key set, from the cache or fetched now.
    pub(crate) async fn metadata(
        &self,
        issuer: &IssuerUrl,
        http: &BoundedHttp,
    ) -> Result<CoreProviderMetadata, String> {
        let mut cache = self.cache.lock().await;
        if let Some((metadata, at)) = &cache.metadata {
            if at.elapsed() < METADATA_TTL {
                return Ok(metadata.clone());
            }
        }
        if cache
            .failed_at
            .is_some_and(|at| at.elapsed() < FAILURE_BACKOFF)
        {
            return Err("discovery failed moments ago; not retried yet".to_owned());
        }
        match CoreProviderMetadata::discover_async(issuer.clone(), http).await {
            Ok(metadata) => {
                let now = Instant::now();
                cache.metadata = Some((metadata.clone(), now));
                cache.keys_fetched_at = Some(now);
                cache.failed_at = None;
                Ok(metadata)
            }
            Err(error) => {
                cache.failed_at = Some(Instant::now());
                Err(format!("discovery failed: {error}"))
            }
        }
    }

    /// The key set fetched again, unless it was fetched within [`KEY_REFETCH_INTERVAL`]
    /// (or without discovery yet).
    pub(crate) async fn refetch_keys(&self, http: &BoundedHttp) -> Option<CoreJsonWebKeySet> {
        let mut cache = self.cache.lock().await;
        if cache
            .keys_fetched_at
            .is_some_and(|at| at.elapsed() < self.key_refetch_interval)
        {
            return None;
        }
        cache.keys_fetched_at = Some(Instant::now());
        let (metadata, _) = cache.metadata.as_mut()?;
        match CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), http).await {
            Ok(keys) => {
                *metadata = metadata.clone().set_jwks(keys.clone());
                Some(keys)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot refetch the OpenID provider's keys");
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
