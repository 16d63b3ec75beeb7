-- The portal follows a connection from the Connect click to the tunnel server's stop
-- report. Keep column names identical to ../postgres/0003_connection_history.sql.
-- tunnel_ticket_hash: the tunnel ticket the client ticket's exchange issued (NULL for a
-- direct service, or before the exchange); notify_tickets.tunnel_ticket_hash leads on to
-- the tunnel session.
ALTER TABLE client_tickets ADD COLUMN tunnel_ticket_hash BLOB;
-- The portal's "recent connections" of one user.
CREATE INDEX client_tickets_user_created ON client_tickets (user_id, created_at);
CREATE INDEX notify_tickets_tunnel_ticket ON notify_tickets (tunnel_ticket_hash);
