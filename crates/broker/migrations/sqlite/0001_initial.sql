-- Portcullis broker schema, version 1 (SQLite).
-- Keep table and column names identical to ../postgres/0001_initial.sql: the broker runs
-- one set of queries on both. Only INTEGER, TEXT and BLOB columns (the types sqlx's Any
-- driver maps); times are Unix milliseconds, booleans 0/1.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE groups (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT    NOT NULL UNIQUE
);

CREATE TABLE user_groups (
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX user_groups_group ON user_groups (group_id);

CREATE TABLE services (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL UNIQUE,
    host             TEXT    NOT NULL,
    port             INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    protocol         TEXT    NOT NULL CHECK (protocol IN ('rdp', 'ssh', 'vnc', 'tcp')),
    transport        TEXT    NOT NULL CHECK (transport IN ('direct', 'tunneled')),
    tunnel_group     TEXT,
    max_session_secs INTEGER NOT NULL CHECK (max_session_secs > 0),
    created_at       INTEGER NOT NULL,
    CHECK (transport = 'direct' OR tunnel_group IS NOT NULL)
);

CREATE TABLE service_groups (
    service_id INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    PRIMARY KEY (service_id, group_id)
);
CREATE INDEX service_groups_group ON service_groups (group_id);

CREATE TABLE tunnel_servers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL UNIQUE,
    public_address TEXT    NOT NULL,
    token_hash     BLOB    NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    legacy         INTEGER NOT NULL CHECK (legacy IN (0, 1)),
    tunnel_group   TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX tunnel_servers_group ON tunnel_servers (tunnel_group);

-- Tickets are keyed by SHA-256("portcullis ticket id v1" || 0x00 || id): never the id.
CREATE TABLE client_tickets (
    id_hash          BLOB    NOT NULL PRIMARY KEY CHECK (length(id_hash) = 32),
    status_id        TEXT    NOT NULL UNIQUE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service_id       INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    scrambler        TEXT    NOT NULL,
    client_os        TEXT,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER,
    progress_percent INTEGER,
    last_error       TEXT
);

-- secret_enc = nonce || AES-256-GCM(key from the ticket id, secret) || tag.
CREATE TABLE tunnel_tickets (
    id_hash          BLOB    NOT NULL PRIMARY KEY CHECK (length(id_hash) = 32),
    secret_enc       BLOB    NOT NULL,
    target_host      TEXT    NOT NULL,
    target_port      INTEGER NOT NULL CHECK (target_port BETWEEN 1 AND 65535),
    service_id       INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tunnel_group     TEXT    NOT NULL,
    max_session_secs INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    used_at          INTEGER,
    failed_proofs    INTEGER NOT NULL DEFAULT 0,
    -- 1 when issued for a legacy (OpenUDS 5) tunnel server: only then may a start come
    -- without the launcher's proof.
    issued_to_legacy INTEGER NOT NULL DEFAULT 0 CHECK (issued_to_legacy IN (0, 1))
);

-- No foreign keys: a running session outlives the removal of its user, service or
-- tunnel server, and its stop report is still accounted.
CREATE TABLE notify_tickets (
    id_hash            BLOB    NOT NULL PRIMARY KEY CHECK (length(id_hash) = 32),
    tunnel_ticket_hash BLOB    NOT NULL,
    user_id            INTEGER NOT NULL,
    service_id         INTEGER NOT NULL,
    tunnel_server_id   INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    stopped_at         INTEGER,
    sent               INTEGER,
    recv               INTEGER
);

CREATE TABLE audit_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    username  TEXT,
    service   TEXT,
    source_ip TEXT,
    detail    TEXT    NOT NULL
);

CREATE TABLE login_sessions (
    token_hash BLOB    NOT NULL PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX login_sessions_user ON login_sessions (user_id);
