//! From a verified identity to a Portcullis user: the allowed-domain rule, the group
//! mapping, and the user found by provider and `sub` or created (just in time). A user is
//! never matched by name or e-mail: a local user (or another provider's) with the same
//! name is not taken over.
//!
//! With a group mapping (`auth.oidc.groups`), the provider decides: the user's groups are
//! set from the claim at every sign-in. Without one (Google, say, has no group claim), the
//! administrator decides with `admin group add-member`, and sign-ins leave groups alone.

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
    /// The user's groups now: those the claim mapped to (except `missing`), or without a
    /// mapping those the administrator gave.
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
    let managed = !config.groups.is_empty();
    let mapped = mapped_groups(config, identity);
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
    let (groups, missing) = if managed {
        // Groups the provider took away take their services with them, live sessions too.
        let (missing, _) = store.set_user_groups(user.id, &mapped, now).await?;
        (mapped, missing)
    } else {
        (store.groups_of_user(user.id).await?, Vec::new())
    };
    // Checked after the groups are updated, so that a user the provider took out of
    // every group also loses the groups here.
    if groups.is_empty() && config.require_group {
        return Ok(Err(Refusal::NoGroup));
    }
    Ok(Ok(SignedInUser {
        user,
        created,
        groups,
        missing,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn config(extra: &str) -> OidcProviderConfig {
        let text = format!(
            "name = \"Corp\"\nissuer = \"https://id.example.com\"\nclient_id = \"c\"\n\
             client_secret_env = \"PATH\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    fn identity(claims: serde_json::Value) -> Identity {
        Identity {
            subject: "sub-1".into(),
            claims: claims.as_object().unwrap().clone(),
        }
    }

    async fn store() -> Store {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        for group in ["staff", "admins"] {
            store.add_group(group).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn groups_follow_the_claim_at_every_sign_in() {
        let store = store().await;
        let corp =
            config("groups = { vpn = [\"staff\"], ops = [\"admins\", \"staff\"], x = [\"gone\"] }");
        let first = identity(json!({ "preferred_username": "alice", "groups": ["ops", "x"] }));
        let signed = sign_in(&store, &corp, &first, 1).await.unwrap().unwrap();
        assert!(signed.created);
        assert_eq!(signed.groups, ["admins", "gone", "staff"]);
        assert_eq!(signed.missing, ["gone"]);
        assert_eq!(
            store.groups_of_user(signed.user.id).await.unwrap(),
            ["admins", "staff"]
        );
        let later = identity(json!({ "preferred_username": "renamed", "groups": "vpn" }));
        let again = sign_in(&store, &corp, &later, 2).await.unwrap().unwrap();
        assert!(!again.created);
        assert_eq!(again.user.username, "alice", "found by sub, not by name");
        assert_eq!(
            store.groups_of_user(again.user.id).await.unwrap(),
            ["staff"]
        );
        let none = identity(json!({ "groups": ["other"] }));
        sign_in(&store, &corp, &none, 3).await.unwrap().unwrap();
        assert!(
            store
                .groups_of_user(again.user.id)
                .await
                .unwrap()
                .is_empty()
        );

        let strict = config("require_group = true\ngroups = { vpn = [\"staff\"] }");
        assert_eq!(
            sign_in(&store, &strict, &none, 4)
                .await
                .unwrap()
                .unwrap_err(),
            Refusal::NoGroup
        );
    }

    #[tokio::test]
    async fn without_a_mapping_the_administrator_sets_the_groups() {
        let store = store().await;
        let google = config("username_claim = \"email\"");
        let who = identity(json!({ "email": "bob@example.com", "groups": ["vpn"] }));
        let signed = sign_in(&store, &google, &who, 1).await.unwrap().unwrap();
        assert_eq!(signed.user.username, "bob@example.com");
        assert!(signed.groups.is_empty());
        store.add_member("staff", "bob@example.com").await.unwrap();
        let again = sign_in(&store, &google, &who, 2).await.unwrap().unwrap();
        assert_eq!(again.groups, ["staff"]);
    }

    #[tokio::test]
    async fn local_names_are_not_taken_over_and_domains_are_checked() {
        let store = store().await;
        store
            .add_user(
                "carol",
                "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",
                1,
            )
            .await
            .unwrap();
        let corp = config("");
        let carol = identity(json!({ "preferred_username": "carol" }));
        let refused = sign_in(&store, &corp, &carol, 1)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.code(), "name_taken");
        assert!(store.user_by_oidc("Corp", "sub-1").await.unwrap().is_none());

        let domain = config("allowed_domains = [\"example.com\"]");
        for (claims, allowed) in [
            (json!({ "email": "a@example.com" }), true),
            (
                json!({ "email": "a@EXAMPLE.com", "email_verified": true }),
                true,
            ),
            (
                json!({ "email": "a@example.com", "email_verified": false }),
                false,
            ),
            (json!({ "email": "a@evil.com" }), false),
            (json!({ "email": "a@example.com.evil.com" }), false),
            (json!({}), false),
        ] {
            let result = check_domain(&domain, &identity(claims.clone()));
            assert_eq!(result.is_ok(), allowed, "{claims}");
        }
    }
}
