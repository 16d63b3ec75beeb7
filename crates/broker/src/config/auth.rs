//! `[[auth.oidc]]`: OpenID Connect providers users may sign in with, beside passwords.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::ConfigError;
use super::error::invalid;

/// `[auth]`: how users sign in besides their password.
#[derive(Clone, PartialEq, Eq, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// OpenID Connect providers, one `[[auth.oidc]]` table each, shown as "Sign in with
    /// NAME" buttons in this order. Default: none.
    pub oidc: Vec<OidcProviderConfig>,
}

/// One `[[auth.oidc]]` provider.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// The name on the button ("Sign in with NAME"), in the audit log and in
    /// `admin user list`; its slug (lower-case letters, digits and `-`) is in the redirect
    /// URL `<public_url>/login/oidc/<slug>/callback`. Required; at most 64 bytes.
    pub name: String,
    /// The issuer URL, exactly as the provider's discovery document says
    /// (`<issuer>/.well-known/openid-configuration`). `https://`, or `http://` on
    /// `127.0.0.1`, `localhost` or `[::1]` for tests and development. Required.
    pub issuer: String,
    /// The client id registered at the provider. Required.
    pub client_id: String,
    /// A file holding the client secret (surrounding white space ignored). Exactly one of
    /// this and `client_secret_env`.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// An environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes requested; `openid` is always added. Default `["openid", "profile",
    /// "email"]`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim that becomes the user name at the first sign-in; `email`, then
    /// `sub` when it is missing. Default `"preferred_username"`.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The ID-token claim with the user's group names or ids (a string or a list of
    /// strings). Default `"groups"`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Claim values to Portcullis groups: `{ "vpn-admins" = ["admins", "staff"] }`. At every
    /// sign-in the user's groups become those its claim values map to. Default: none, and
    /// then sign-ins leave the user's groups alone (the administrator sets them).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// Refuse a sign-in of a user in no group (whose claim maps to none). Default `false`:
    /// such a user signs in and sees no services.
    #[serde(default)]
    pub require_group: bool,
    /// E-mail domains allowed to sign in (`["example.com"]`): the ID token must carry an
    /// `email` in one of them, not marked unverified. Default: any.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Time allowed for each request to the provider, in seconds (1 to 60). Default 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(str::to_owned).to_vec()
}

fn default_username_claim() -> String {
    "preferred_username".to_owned()
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_timeout_secs() -> u64 {
    10
}

/// The longest provider name, in bytes.
const MAX_NAME_LEN: usize = 64;

impl OidcProviderConfig {
    /// The name in URLs and element ids: lower-case ASCII letters and digits, every other
    /// run of characters one `-`.
    pub fn slug(&self) -> String {
        let mut slug = String::new();
        for c in self.name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.trim_end_matches('-').to_owned()
    }

    /// The client secret, read now from its file or environment variable.
    pub fn client_secret(&self) -> Result<Zeroizing<String>, ConfigError> {
        let secret = match (&self.client_secret_file, &self.client_secret_env) {
            (Some(path), None) => {
                std::fs::read_to_string(path)
                    .map(Zeroizing::new)
                    .map_err(|error| {
                        self.invalid(
                            "auth.oidc.client_secret_file",
                            format!("cannot read {}: {error}", path.display()),
                        )
                    })?
            }
            (None, Some(var)) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
                self.invalid(
                    "auth.oidc.client_secret_env",
                    format!("the environment variable {var} is not set"),
                )
            })?,
            _ => {
                return Err(self.invalid(
                    "auth.oidc.client_secret_file",
                    "give exactly one of client_secret_file and client_secret_env".into(),
                ));
            }
        };
        let trimmed = Zeroizing::new(secret.trim().to_owned());
        if trimmed.is_empty() {
            return Err(self.invalid(
                "auth.oidc.client_secret_file",
                "the client secret is empty".into(),
            ));
        }
        Ok(trimmed)
    }

    /// The scopes to request, `openid` first.
    pub fn scopes_with_openid(&self) -> Vec<String> {
        let mut scopes = vec!["openid".to_owned()];
        for scope in &self.scopes {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        scopes
    }

    fn invalid(&self, field: &'static str, reason: String) -> ConfigError {
        invalid(field, format!("provider {:?}: {reason}", self.name))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty()
            || self.name.len() > MAX_NAME_LEN
            || self.name.chars().any(char::is_control)
        {
            return Err(self.invalid(
                "auth.oidc.name",
                format!("must be 1 to {MAX_NAME_LEN} bytes without control characters"),
            ));
        }
        if self.slug().is_empty() {
            return Err(self.invalid(
                "auth.oidc.name",
                "must contain an ASCII letter or digit (it names the redirect URL)".into(),
            ));
        }
        check_issuer(&self.issuer).map_err(|reason| self.invalid("auth.oidc.issuer", reason))?;
        if self.client_id.trim().is_empty() {
            return Err(self.invalid("auth.oidc.client_id", "must not be empty".into()));
        }
        self.client_secret()?;
        if self
            .scopes
            .iter()
            .any(|scope| scope.is_empty() || scope.contains(|c: char| c.is_whitespace()))
        {
            return Err(self.invalid(
                "auth.oidc.scopes",
                "every scope must be one non-empty word".into(),
            ));
        }
        for (field, claim) in [
            ("auth.oidc.username_claim", &self.username_claim),
            ("auth.oidc.groups_claim", &self.groups_claim),
        ] {
            if claim.trim().is_empty() {
                return Err(self.invalid(field, "must not be empty".into()));
            }
        }
        if self
            .groups
            .values()
            .flatten()
            .any(|group| group.trim().is_empty() || group.trim() != group)
        {
            return Err(self.invalid(
                "auth.oidc.groups",
                "group names must not be empty or have surrounding spaces".into(),
            ));
        }
        if self.allowed_domains.iter().any(|domain| {
            domain.is_empty() || domain.contains('@') || domain.to_ascii_lowercase() != *domain
        }) {
            return Err(self.invalid(
                "auth.oidc.allowed_domains",
                "write domains in lower case without @, like \"example.com\"".into(),
            ));
        }
        if !(1..=60).contains(&self.timeout_secs) {
            return Err(self.invalid("auth.oidc.timeout_secs", "must be 1 to 60".into()));
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks every provider, and that no two share a slug.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let mut slugs = Vec::new();
        for provider in &self.oidc {
            provider.validate()?;
            let slug = provider.slug();
            if slugs.contains(&slug) {
                return Err(provider.invalid(
                    "auth.oidc.name",
                    format!("another provider's name also makes the URL name {slug:?}"),
                ));
            }
            slugs.push(slug);
        }
        Ok(())
    }
}

/// An issuer must be `https://`, or `http://` on loopback (tests, development), without
/// user info, query or fragment.
fn check_issuer(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    let loopback = matches!(
        url.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(
                "must be an https:// URL (http:// only on 127.0.0.1, localhost or \
                 [::1], for tests and development)"
                    .into(),
            );
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: &str) -> Result<AuthConfig, String> {
        let text = format!(
            "[[oidc]]\nname = \"Corp SSO\"\nissuer = \"https://id.example.com\"\n\
             client_id = \"portcullis\"\nclient_secret_env = \"PATH\"\n{extra}"
        );
        let config: AuthConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults_slug_and_scopes() {
        let config = provider("scopes = [\"email\"]").unwrap();
        let corp = &config.oidc[0];
        assert_eq!(corp.slug(), "corp-sso");
        assert_eq!(corp.scopes_with_openid(), ["openid", "email"]);
        assert_eq!(corp.groups_claim, "groups");
        assert_eq!(corp.timeout_secs, 10);
    }

    #[test]
    fn errors_name_the_key() {
        for (extra, key) in [
            ("timeout_secs = 0", "auth.oidc.timeout_secs"),
            (
                "client_secret_file = \"/nonexistent\"",
                "auth.oidc.client_secret_file",
            ),
            (
                "allowed_domains = [\"@x.com\"]",
                "auth.oidc.allowed_domains",
            ),
            ("groups = { a = [\" b\"] }", "auth.oidc.groups"),
        ] {
            let error = provider(extra).unwrap_err();
            assert!(error.contains(key), "{extra}: {error}");
        }
        let error = toml::from_str::<AuthConfig>(
            "[[oidc]]\nname = \"x\"\nissuer = \"http://id.example.com\"\nclient_id = \"c\"\n\
             client_secret_env = \"PATH\"",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(error.contains("auth.oidc.issuer"), "{error}");
        assert!(check_issuer("http://127.0.0.1:9999").is_ok());
        assert!(check_issuer("http://localhost:9999/realms/x").is_ok());
        let unset = toml::from_str::<AuthConfig>(
            "[[oidc]]\nname = \"x\"\nissuer = \"https://a\"\nclient_id = \"c\"\n\
             client_secret_env = \"PORTCULLIS_SURELY_UNSET_VAR\"",
        )
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
        assert!(unset.contains("auth.oidc.client_secret_env"), "{unset}");
    }

    #[test]
    fn duplicate_slugs_are_refused() {
        let text = "[[oidc]]\nname = \"Corp\"\nissuer = \"https://a\"\nclient_id = \"c\"\n\
                    client_secret_env = \"PATH\"\n\
                    [[oidc]]\nname = \"corp!\"\nissuer = \"https://b\"\nclient_id = \"c\"\n\
                    client_secret_env = \"PATH\"\n";
        let config: AuthConfig = toml::from_str(text).unwrap();
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("auth.oidc.name")
        );
    }
}
