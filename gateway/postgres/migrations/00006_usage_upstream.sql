-- +goose Up
-- Failover: which upstream served each metered request (its name in the
-- upstream table) and how many attempts the request took.
-- NOT NULL with a default rather than nullable: the event says "not known"
-- with "" and 0 (as the Redis stream entries of older builds decode), so
-- one value means it here too instead of both NULL and ''; the events
-- recorded before this migration get exactly that. A constant default
-- only updates the catalog (PostgreSQL 11+): no table rewrite, however
-- many events there are.
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS upstream text    NOT NULL DEFAULT '';
ALTER TABLE usage_events ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE usage_events DROP COLUMN IF EXISTS attempts;
ALTER TABLE usage_events DROP COLUMN IF EXISTS upstream;
