-- Credentials per service, pass-through passwords sealed to sessions and tickets
-- (docs/protocol.md §6.8). Keep column names identical to ../postgres/0006_credentials.sql.
-- services.credential_mode: none | pass-through | stored | ssh-certificate.
-- credential_username, credential_domain: the stored account's user (stored) and the
-- domain (stored, pass-through); credential_secret: the stored password as a box under the
-- broker's credential key (never the password). ssh_principal: the principal template of
-- an ssh-certificate service; ssh_source_address: 'client', 'none' or a comma-separated
-- list of addresses and networks for the certificate's source-address.
ALTER TABLE services ADD COLUMN credential_mode TEXT NOT NULL DEFAULT 'none'
    CHECK (credential_mode IN ('none', 'pass-through', 'stored', 'ssh-certificate'));
ALTER TABLE services ADD COLUMN credential_username TEXT;
ALTER TABLE services ADD COLUMN credential_domain TEXT;
ALTER TABLE services ADD COLUMN credential_secret BLOB;
ALTER TABLE services ADD COLUMN ssh_principal TEXT;
ALTER TABLE services ADD COLUMN ssh_source_address TEXT;
-- A session's half of the key of its pass-through box (the other half is the cookie).
ALTER TABLE login_sessions ADD COLUMN credential_share BLOB;
ALTER TABLE login_sessions ADD COLUMN credential_box BLOB;
-- The scrambler is kept only as a hash (it keys the ticket's box); credential_box is the
-- pass-through password sealed to the ticket id and scrambler, erased when the ticket is
-- used or its session signs out; session_hash names that session.
ALTER TABLE client_tickets ADD COLUMN scrambler_hash BLOB;
ALTER TABLE client_tickets ADD COLUMN credential_box BLOB;
ALTER TABLE client_tickets ADD COLUMN session_hash BLOB;
ALTER TABLE client_tickets DROP COLUMN scrambler;
CREATE INDEX client_tickets_session ON client_tickets (session_hash);
