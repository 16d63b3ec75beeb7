-- Whether the broker checks that a service's target accepts TCP connections before an
-- exchange ('tcp', as before) or not ('off': the broker cannot reach the target, say a
-- tunneled service behind tunnel servers in another network).
ALTER TABLE services
    ADD COLUMN readiness TEXT NOT NULL DEFAULT 'tcp' CHECK (readiness IN ('tcp', 'off'));
