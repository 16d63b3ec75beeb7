//! Sign-in through OpenID Connect providers (`[[auth.oidc]]` in `broker.toml`).
//!
//! The authorization code flow with PKCE ([`flow`]): the pending sign-in (state, nonce,
//! PKCE verifier) lives in a signed cookie (module `cookie`), discovery and keys are cached
//! (module `keys`), every provider request is bounded in time and size ([`http`]), the ID token
//! is verified ([`verify`]), and its identity becomes a Portcullis user ([`account`]):
//! found by provider and `sub`, created at the first sign-in, its groups set from the
//! group claim. The portal's routes are in `http::portal::oidc`; the session that follows
//! is the password sign-in's own.

pub mod account;
pub(crate) mod cookie;
pub mod flow;
pub mod http;
mod keys;
mod refusal;
pub mod verify;

use aws_lc_rs::hmac;
use openidconnect::{ClientId, ClientSecret, IssuerUrl, RedirectUrl};

use crate::config::{ConfigError, OidcProviderConfig};

pub use refusal::Refusal;

/// Why the providers could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// A setting is wrong (the client secret cannot be read, say).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A URL derived from the settings is not valid.
    #[error("provider {provider:?}: {reason}")]
    Url {
        /// The provider's name.
        provider: String,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] http::HttpError),
}

/// One configured provider, ready for sign-ins.
pub struct Provider {
    /// Its settings.
    pub config: OidcProviderConfig,
    /// Its name in URLs and element ids.
    pub slug: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    secret: ClientSecret,
    redirect: RedirectUrl,
    http: http::BoundedHttp,
    discovery: keys::Discovery,
}

impl core::fmt::Debug for Provider {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The client secret stays out.
        f.debug_struct("Provider")
            .field("name", &self.config.name)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The provider's name, as on its button.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The redirect URL to register at the provider.
    pub fn redirect_url(&self) -> &str {
        self.redirect.as_str()
    }
}

/// Every configured provider, and the key that signs pending sign-ins.
pub struct Providers {
    list: Vec<Provider>,
    cookie_key: hmac::Key,
}

impl core::fmt::Debug for Providers {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Providers")
            .field("list", &self.list)
            .finish_non_exhaustive()
    }
}

/// The path of a provider's redirect URL (`/login/oidc/<slug>/callback`).
pub fn callback_path(slug: &str) -> String {
    format!("/login/oidc/{slug}/callback")
}

impl Providers {
    /// Sets up `configs` (reading their client secrets now) for a broker at `public_url`;
    /// `seed` keys the pending-sign-in cookies (the broker's signing-key seed).
    pub fn new(
        configs: &[OidcProviderConfig],
        public_url: &str,
        seed: &[u8],
    ) -> Result<Self, OidcError> {
        let mut list = Vec::with_capacity(configs.len());
        for config in configs {
            let url_error = |reason: String| OidcError::Url {
                provider: config.name.clone(),
                reason,
            };
            let slug = config.slug();
            let secret = config.client_secret()?;
            let issuer = IssuerUrl::new(config.issuer.clone())
                .map_err(|error| url_error(format!("issuer: {error}")))?;
            let redirect = RedirectUrl::new(format!("{public_url}{}", callback_path(&slug)))
                .map_err(|error| url_error(format!("redirect URL: {error}")))?;
            list.push(Provider {
                slug,
                issuer,
                client_id: ClientId::new(config.client_id.clone()),
                secret: ClientSecret::new(secret.as_str().to_owned()),
                redirect,
                http: http::BoundedHttp::new(std::time::Duration::from_secs(config.timeout_secs))?,
                discovery: keys::Discovery::default(),
                config: config.clone(),
            });
        }
        Ok(Self {
            list,
            cookie_key: cookie::cookie_key(seed),
        })
    }

    /// The provider with this slug.
    pub fn get(&self, slug: &str) -> Option<&Provider> {
        self.list.iter().find(|provider| provider.slug == slug)
    }

    /// Every provider, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        self.list.iter()
    }
}
