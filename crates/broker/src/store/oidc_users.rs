//! Users who sign in through an OpenID Connect provider (found by provider and `sub`,
//! created at their first sign-in, their groups set from the provider's claim), and
//! disabling accounts.

use sqlx::Row;

use super::live::{Revoked, revoke_lost_access, revoke_user};
use super::users::{USER_COLUMNS, check_name, user_from_row};
use super::{Store, StoreError, User, UserId};

/// The longest `sub` kept (OpenID Connect Core: at most 255 ASCII characters).
pub(crate) const MAX_SUBJECT_LEN: usize = 255;

impl Store {
    /// The user linked to `subject` at `provider`, if any.
    pub async fn user_by_oidc(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE oidc_provider = $1 AND oidc_subject = $2"
        );
        let row = sqlx::query(&sql)
            .bind(provider)
            .bind(subject)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Adds a user who signs in at `provider` as `subject` (and never with a password).
    /// [`StoreError::Conflict`] if the name is taken, or the subject already linked.
    pub async fn add_oidc_user(
        &self,
        username: &str,
        provider: &str,
        subject: &str,
        now: i64,
    ) -> Result<UserId, StoreError> {
        check_name("username", username)?;
        if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN {
            return Err(StoreError::Invalid(format!(
                "an OpenID Connect subject must be 1 to {MAX_SUBJECT_LEN} bytes"
            )));
        }
        let mut writer = self.writer().await?;
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at, oidc_provider, \
             oidc_subject) VALUES ($1, '', $2, $3, $4) RETURNING id",
        )
        .bind(username)
        .bind(now)
        .bind(provider)
        .bind(subject)
        .fetch_one(writer.conn())
        .await
        .map_err(|e| StoreError::unique(e, || format!("user {username:?} already exists")))?;
        Ok(UserId(row.try_get("id")?))
    }

    /// Makes `user` a member of exactly the existing groups among `groups`, in one
    /// transaction, revoking what they may no longer use; returns the names in `groups`
    /// that are no group, and what was revoked.
    pub async fn set_user_groups(
        &self,
        user: UserId,
        groups: &[String],
        now: i64,
    ) -> Result<(Vec<String>, Revoked), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM user_groups WHERE user_id = $1")
            .bind(user.0)
            .execute(tx.conn())
            .await?;
        let mut missing = Vec::new();
        for group in groups {
            let done = sqlx::query(
                "INSERT INTO user_groups (user_id, group_id) \
                 SELECT $1, id FROM groups WHERE name = $2",
            )
            .bind(user.0)
            .bind(group)
            .execute(tx.conn())
            .await?;
            if done.rows_affected() == 0 {
                missing.push(group.clone());
            }
        }
        let revoked = revoke_lost_access(tx.conn(), now).await?;
        tx.commit().await?;
        Ok((missing, revoked))
    }

    /// Disables (`disabled_at` is `Some`) or enables (`None`) the user named `username`.
    /// Disabling, in the same transaction, also ends every login session of the user,
    /// expires their unused client and tunnel tickets and asks for the end of their live
    /// sessions (`by`: who disabled them); what was revoked comes back.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled_at: Option<i64>,
        by: Option<&str>,
    ) -> Result<Revoked, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("UPDATE users SET disabled_at = $1 WHERE username = $2 RETURNING id")
            .bind(disabled_at)
            .bind(username)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        let id: i64 = row.try_get("id")?;
        let mut revoked = Revoked::default();
        if let Some(now) = disabled_at {
            sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
                .bind(id)
                .execute(tx.conn())
                .await?;
            revoked = revoke_user(tx.conn(), UserId(id), now, by).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, TokenHash};

    #[tokio::test]
    async fn oidc_users_are_found_by_provider_and_subject_and_disabling_ends_sessions() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.add_group("staff").await.unwrap();
        let id = store
            .add_oidc_user("alice", "corp", "sub-1", 5)
            .await
            .unwrap();
        let found = store.user_by_oidc("corp", "sub-1").await.unwrap().unwrap();
        assert_eq!(found.id, id);
        assert_eq!(found.oidc.as_ref().unwrap().provider, "corp");
        assert!(
            store
                .user_by_oidc("other", "sub-1")
                .await
                .unwrap()
                .is_none()
        );
        // The same name from elsewhere is a conflict, never a takeover.
        assert!(store.add_oidc_user("alice", "other", "x", 5).await.is_err());
        assert!(
            store
                .add_oidc_user("bob", "corp", "sub-1", 5)
                .await
                .is_err()
        );

        let missing = store
            .set_user_groups(id, &["staff".into(), "nope".into()], 1)
            .await
            .unwrap()
            .0;
        assert_eq!(missing, ["nope"]);
        assert_eq!(store.groups_of_user(id).await.unwrap(), ["staff"]);
        store.set_user_groups(id, &[], 1).await.unwrap();
        assert!(store.groups_of_user(id).await.unwrap().is_empty());

        let token = TokenHash::of(b"t");
        store
            .create_login_session(&token, id, 10, 1000)
            .await
            .unwrap();
        assert!(
            store
                .login_session_user(&token, 20)
                .await
                .unwrap()
                .is_some()
        );
        store
            .set_user_disabled("alice", Some(30), None)
            .await
            .unwrap();
        assert!(
            store
                .login_session_user(&token, 40)
                .await
                .unwrap()
                .is_none()
        );
        store
            .create_login_session(&token, id, 10, 1000)
            .await
            .unwrap();
        assert!(
            store
                .login_session_user(&token, 40)
                .await
                .unwrap()
                .is_none()
        );
        store.set_user_disabled("alice", None, None).await.unwrap();
        assert!(
            store
                .login_session_user(&token, 40)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            store
                .set_user_disabled("nobody", Some(1), None)
                .await
                .is_err()
        );
    }
}
