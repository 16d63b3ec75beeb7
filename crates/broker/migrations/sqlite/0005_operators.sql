-- Operators (issue 18): live sessions the broker can end, their bytes so far, the tunnel
-- servers' last contact, and the administrator of each audit event. Keep column names
-- identical to ../postgres/0005_operators.sql.
--
-- notify_tickets, the live sessions (docs/protocol.md §7.8):
--   end_requested_at, end_requested_by, end_cause: when and by whom the broker was asked to
--   end the session ('administrator': ended from the admin pages; 'user_disabled';
--   'access_removed': the user left the service's groups, or the grant went), until the
--   tunnel server's stop arrives;
--   live_sent, live_recv, reported_at: the bytes so far from the tunnel server's control
--   channel, and when they were reported.
ALTER TABLE notify_tickets ADD COLUMN end_requested_at INTEGER;
ALTER TABLE notify_tickets ADD COLUMN end_requested_by TEXT;
ALTER TABLE notify_tickets ADD COLUMN end_cause TEXT;
ALTER TABLE notify_tickets ADD COLUMN live_sent INTEGER;
ALTER TABLE notify_tickets ADD COLUMN live_recv INTEGER;
ALTER TABLE notify_tickets ADD COLUMN reported_at INTEGER;
-- The live sessions (the admin page), and the end commands not yet delivered (polled by
-- every broker that holds a control request, every 250 ms): both partial, so they stay as
-- small as what they list.
CREATE INDEX notify_tickets_live ON notify_tickets (started_at) WHERE stopped_at IS NULL;
CREATE INDEX notify_tickets_end_pending ON notify_tickets (tunnel_server_id)
    WHERE end_requested_at IS NOT NULL AND stopped_at IS NULL;
-- A user's live sessions (disabling them ends those).
CREATE INDEX notify_tickets_user ON notify_tickets (user_id) WHERE stopped_at IS NULL;

-- tunnel_servers: last_seen_at, the last start, stop or control request; control_seen_at,
-- the last control request (a server whose channel is up can have its sessions ended).
ALTER TABLE tunnel_servers ADD COLUMN last_seen_at INTEGER;
ALTER TABLE tunnel_servers ADD COLUMN control_seen_at INTEGER;

-- audit_events.actor: the administrator who did it (a portal user's name, or
-- 'cli:<system user>' for portcullis admin); NULL for events of users and servers.
ALTER TABLE audit_events ADD COLUMN actor TEXT;
-- The admin audit page filters by event, user, service and time, newest first.
CREATE INDEX audit_events_kind ON audit_events (kind, id);
CREATE INDEX audit_events_username ON audit_events (username, id);
CREATE INDEX audit_events_service ON audit_events (service, id);
CREATE INDEX audit_events_at ON audit_events (at);
