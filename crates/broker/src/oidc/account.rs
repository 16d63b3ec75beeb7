//! From a verified identity to a Portcullis user: the allowed-domain rule, the group
//! mapping, and the user found by provider and `sub` or created (just in time). A user is
//! never matched by name or e-mail: a local user (or another provider's) with the same
//! name is not taken over.

use crate::config::OidcProviderConfig;
use crate::store::{Store, StoreError, User};

use super::Refusal;
use super::verify::Identity;

/// A user signed in through a provider, with the groups the claim gave them.
#[derive(Debug)]
pub struct SignedInUser {
    /// The user.
    pub user: User,
    /// Whether the user was created by this sign-in.
    pub created: bool,
    /// The groups the claim mapped to (the user's groups now, except `missing`).
    pub groups: Vec<String>,
    /// Mapped groups that do not exist in the broker (the operator should add them).
    pub missing: Vec<String>,
}

/// The Portcullis groups `identity`'s group claim maps to, sorted and without duplicates.
pub fn mapped_groups(config: &OidcProviderConfig, identity: &Identity) -> Vec<String> {
    let mut groups: Vec<String> = identity
        .strings(&config.groups_claim)
        .iter()
        .filter_map(|value| config.groups.get(value))
        .flatten()
        .cloned()
        .collect();
    groups.sort();
    groups.dedup();
    groups
}

/// Checks the allowed-domain rule.
fn check_domain(config: &OidcProviderConfig, identity: &Identity) -> Result<(), Refusal> {
    if config.allowed_domains.is_empty() {
        return Ok(());
    }
    let email = identity
        .string("email")
        .ok_or_else(|| Refusal::NotAllowed("the ID token has no email claim".into()))?;
    if identity.email_verified() == Some(false) {
        return Err(Refusal::NotAllowed(format!(
            "the e-mail {email} is not verified"
        )));
    }
    let domain = email
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default();
    if config.allowed_domains.contains(&domain) {
        Ok(())
    } else {
        Err(Refusal::NotAllowed(format!(
            "the e-mail domain {domain:?} is not in allowed_domains"
        )))
    }
}

/// The user name for a first sign-in: the configured claim, else `email`, else `sub`.
fn username(config: &OidcProviderConfig, identity: &Identity) -> String {
    identity
        .string(&config.username_claim)
        .or_else(|| identity.string("email"))
        .unwrap_or(&identity.subject)
        .to_owned()
}

/// Signs `identity` in as the user of `config`'s provider: checks, creates the user at the
/// first sign-in, and sets the groups from the claim. `Ok(Err(_))` is a refusal.
pub async fn sign_in(
    store: &Store,
    config: &OidcProviderConfig,
    identity: &Identity,
    now: i64,
) -> Result<Result<SignedInUser, Refusal>, StoreError> {
    if let Err(refusal) = check_domain(config, identity) {
        return Ok(Err(refusal));
    }
    let groups = mapped_groups(config, identity);
    if groups.is_empty() && config.require_group {
        return Ok(Err(Refusal::NoGroup));
    }
    let (user, created) = match store.user_by_oidc(&config.name, &identity.subject).await? {
        Some(user) if user.disabled_at.is_some() => return Ok(Err(Refusal::Disabled)),
        Some(user) => (user, false),
        None => {
            let name = username(config, identity);
            if store.user_by_name(&name).await?.is_some() {
                return Ok(Err(Refusal::NameTaken(format!(
                    "user {name:?} exists and is not linked to this provider's subject"
                ))));
            }
            let id = match store
                .add_oidc_user(&name, &config.name, &identity.subject, now)
                .await
            {
                Ok(id) => id,
                Err(StoreError::Conflict(reason)) => return Ok(Err(Refusal::NameTaken(reason))),
                Err(StoreError::Invalid(reason)) => {
                    return Ok(Err(Refusal::Token(format!("unusable identity: {reason}"))));
                }
                Err(other) => return Err(other),
            };
            let user = store
                .user_by_id(id)
                .await?
                .ok_or(StoreError::NotFound("user"))?;
            (user, true)
        }
    };
    let missing = store.set_user_groups(user.id, &groups).await?;
    Ok(Ok(SignedInUser {
        user,
        created,
        groups,
        missing,
    }))
}
