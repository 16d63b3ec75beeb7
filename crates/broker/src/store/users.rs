//! Users, groups, memberships and login sessions.

use core::fmt;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::live::{Revoked, revoke_lost_access};
use super::{GroupId, Store, StoreError, TokenHash, UserId};

/// The longest user, group, service or tunnel server name.
pub(crate) const MAX_NAME_LEN: usize = 128;

/// Refuses an empty, over-long or control-character name. `what` names the field.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(StoreError::Invalid(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes"
        )));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "{what} must not have surrounding spaces or control characters"
        )));
    }
    Ok(())
}

/// A user account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// Row id.
    pub id: UserId,
    /// Unique login name.
    pub username: String,
    /// Argon2id PHC string (`$argon2id$v=19$…`), made and checked by the caller.
    pub password_hash: String,
    /// Creation time, Unix milliseconds.
    pub created_at: i64,
    /// The OpenID Connect provider and subject this user signs in with; `None` for a
    /// local (password) user.
    pub oidc: Option<OidcLink>,
    /// When an administrator disabled the account (Unix milliseconds); `None` if active.
    pub disabled_at: Option<i64>,
}

/// The identity of a user at an OpenID Connect provider.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct OidcLink {
    /// The provider's name (`auth.oidc.name`).
    pub provider: String,
    /// The ID token's `sub`: the provider's stable id of the user.
    pub subject: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("oidc", &self.oidc)
            .field("disabled_at", &self.disabled_at)
            .finish()
    }
}

/// A group of users; services are granted to groups.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Group {
    /// Row id.
    pub id: GroupId,
    /// Unique name.
    pub name: String,
}

pub(super) const USER_COLUMNS: &str = "users.id, users.username, users.password_hash, \
     users.created_at, users.oidc_provider, users.oidc_subject, users.disabled_at";

pub(super) fn user_from_row(row: &AnyRow) -> Result<User, StoreError> {
    let provider: Option<String> = row.try_get("oidc_provider")?;
    let subject: Option<String> = row.try_get("oidc_subject")?;
    Ok(User {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        created_at: row.try_get("created_at")?,
        oidc: provider
            .zip(subject)
            .map(|(provider, subject)| OidcLink { provider, subject }),
        disabled_at: row.try_get("disabled_at")?,
    })
}

fn check_password_hash(hash: &str) -> Result<(), StoreError> {
    // A guard against storing a plaintext password by mistake.
    if hash.starts_with("$argon2id$") {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "password hash must be an Argon2id PHC string".to_owned(),
        ))
    }
}

impl Store {
    /// Adds a user; `password_hash` must be an Argon2id PHC string.
    pub async fn add_user(
        &self,
        username: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<UserId, StoreError> {
        check_name("username", username)?;
        check_password_hash(password_hash)?;
        let mut writer = self.writer().await?;
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, created_at) VALUES ($1, $2, $3) \
             RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(now)
        .fetch_one(writer.conn())
        .await
        .map_err(|e| StoreError::unique(e, || format!("user {username:?} already exists")))?;
        Ok(UserId(row.try_get("id")?))
    }

    /// The user named `username`.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        let row = sqlx::query(&sql)
            .bind(username)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The user with row id `id`.
    pub async fn user_by_id(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username");
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Removes a user with their memberships, login sessions and unused tickets, and asks
    /// for the end of their live sessions (which outlive the row, to be accounted).
    pub async fn remove_user(&self, username: &str, now: i64) -> Result<Revoked, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound("user"));
        }
        let revoked = revoke_lost_access(tx.conn(), now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Replaces a user's password hash (an Argon2id PHC string).
    pub async fn set_password_hash(
        &self,
        user: UserId,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        check_password_hash(password_hash)?;
        let mut writer = self.writer().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user.0)
            .execute(writer.conn())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    /// Adds a group.
    pub async fn add_group(&self, name: &str) -> Result<GroupId, StoreError> {
        check_name("group name", name)?;
        let mut writer = self.writer().await?;
        let row = sqlx::query("INSERT INTO groups (name) VALUES ($1) RETURNING id")
            .bind(name)
            .fetch_one(writer.conn())
            .await
            .map_err(|e| StoreError::unique(e, || format!("group {name:?} already exists")))?;
        Ok(GroupId(row.try_get("id")?))
    }

    /// Every group, by name.
    pub async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        let rows = sqlx::query("SELECT id, name FROM groups ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Group {
                    id: GroupId(row.try_get("id")?),
                    name: row.try_get("name")?,
                })
            })
            .collect()
    }

    /// Removes a group with its memberships and service grants; what its members may no
    /// longer use is revoked (tickets expired, live sessions asked to end).
    pub async fn remove_group(&self, name: &str, now: i64) -> Result<Revoked, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM groups WHERE name = $1")
            .bind(name)
            .execute(tx.conn())
            .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound("group"));
        }
        let revoked = revoke_lost_access(tx.conn(), now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Makes `username` a member of `group`; [`StoreError::Conflict`] if already one.
    pub async fn add_member(&self, group: &str, username: &str) -> Result<(), StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query(
            "INSERT INTO user_groups (user_id, group_id) \
             SELECT users.id, groups.id FROM users, groups \
             WHERE groups.name = $1 AND users.username = $2",
        )
        .bind(group)
        .bind(username)
        .execute(writer.conn())
        .await
        .map_err(|e| {
            StoreError::unique(e, || {
                format!("user {username:?} already is a member of {group:?}")
            })
        })?;
        drop(writer);
        if done.rows_affected() == 0 {
            let missing = self.missing_group_or_user(group, username).await?;
            return Err(StoreError::NotFound(missing.unwrap_or("user")));
        }
        Ok(())
    }

    /// Ends the membership of `username` in `group`; what they may no longer use is
    /// revoked (tickets expired, live sessions asked to end).
    pub async fn remove_member(
        &self,
        group: &str,
        username: &str,
        now: i64,
    ) -> Result<Revoked, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM user_groups \
             WHERE group_id = (SELECT id FROM groups WHERE name = $1) \
             AND user_id = (SELECT id FROM users WHERE username = $2)",
        )
        .bind(group)
        .bind(username)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            let missing = self.missing_group_or_user(group, username).await?;
            return Err(StoreError::NotFound(missing.unwrap_or("membership")));
        }
        let revoked = revoke_lost_access(tx.conn(), now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// `Some("group")` or `Some("user")` when that one does not exist, `None` when both do.
    async fn missing_group_or_user(
        &self,
        group: &str,
        username: &str,
    ) -> Result<Option<&'static str>, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM groups WHERE name = $1) AS group_count, \
                    (SELECT COUNT(*) FROM users WHERE username = $2) AS user_count",
        )
        .bind(group)
        .bind(username)
        .fetch_one(self.pool())
        .await?;
        let groups: i64 = row.try_get("group_count")?;
        let users: i64 = row.try_get("user_count")?;
        Ok(match (groups, users) {
            (0, _) => Some("group"),
            (_, 0) => Some("user"),
            _ => None,
        })
    }

    /// The names of the groups `user` belongs to, sorted.
    pub async fn groups_of_user(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT groups.name FROM groups \
             JOIN user_groups ON user_groups.group_id = groups.id \
             WHERE user_groups.user_id = $1 ORDER BY groups.name",
        )
        .bind(user.0)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("name"))
            .collect::<Result<_, _>>()?)
    }

    /// The usernames of the members of `group`, sorted.
    pub async fn members_of_group(&self, group: &str) -> Result<Vec<String>, StoreError> {
        let exists = sqlx::query("SELECT id FROM groups WHERE name = $1")
            .bind(group)
            .fetch_optional(self.pool())
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("group"));
        }
        let rows = sqlx::query(
            "SELECT users.username FROM users \
             JOIN user_groups ON user_groups.user_id = users.id \
             JOIN groups ON groups.id = user_groups.group_id \
             WHERE groups.name = $1 ORDER BY users.username",
        )
        .bind(group)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("username"))
            .collect::<Result<_, _>>()?)
    }

    /// Records a login session under the hash of its token, valid until `expires_at`.
    pub async fn create_login_session(
        &self,
        token: &TokenHash,
        user: UserId,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        if expires_at <= now {
            return Err(StoreError::Invalid(
                "a login session must expire after its creation".to_owned(),
            ));
        }
        let mut writer = self.writer().await?;
        sqlx::query(
            "INSERT INTO login_sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token.as_bytes().as_slice())
        .bind(user.0)
        .bind(now)
        .bind(expires_at)
        .execute(writer.conn())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound("user")
            }
            _ => StoreError::unique(e, || "login session token already in use".to_owned()),
        })?;
        Ok(())
    }

    /// The user of an unexpired login session, unless the account is disabled.
    pub async fn login_session_user(
        &self,
        token: &TokenHash,
        now: i64,
    ) -> Result<Option<User>, StoreError> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users \
             JOIN login_sessions ON login_sessions.user_id = users.id \
             WHERE login_sessions.token_hash = $1 AND login_sessions.expires_at > $2 \
             AND users.disabled_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(token.as_bytes().as_slice())
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Ends a login session; `false` if there was none.
    pub async fn delete_login_session(&self, token: &TokenHash) -> Result<bool, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM login_sessions WHERE token_hash = $1")
            .bind(token.as_bytes().as_slice())
            .execute(writer.conn())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every login session of `user` (after a password change); returns how many.
    pub async fn delete_login_sessions_of(&self, user: UserId) -> Result<u64, StoreError> {
        let mut writer = self.writer().await?;
        let done = sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
            .bind(user.0)
            .execute(writer.conn())
            .await?;
        Ok(done.rows_affected())
    }
}
