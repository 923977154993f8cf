-- +goose Up
-- The retention job (PruneUsage) also forgets webhook delivery ids past the
-- usage retention: no provider redelivers, and no signature verifies, that
-- late. Indexed so that the hourly job does not scan the tables.
CREATE INDEX IF NOT EXISTS stripe_events_received_at ON stripe_events (received_at);
CREATE INDEX IF NOT EXISTS clerk_events_received_at ON clerk_events (received_at);

-- +goose Down
DROP INDEX IF EXISTS clerk_events_received_at;
DROP INDEX IF EXISTS stripe_events_received_at;
