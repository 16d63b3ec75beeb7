-- Users signed in through OpenID Connect, and disabled accounts. Keep column names
-- identical to ../sqlite/0004_oidc_users.sql.
-- oidc_provider, oidc_subject: the provider's name in broker.toml (`auth.oidc.name`) and
-- the ID token's `sub`; both NULL for a local (password) user. A user is found by this
-- pair, never by name or e-mail. Such a user's password_hash is '' (no password sign-in).
-- disabled_at: when `portcullis admin user disable` ran (Unix milliseconds), else NULL.
ALTER TABLE users ADD COLUMN oidc_provider TEXT;
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
CREATE UNIQUE INDEX users_oidc ON users (oidc_provider, oidc_subject);
