-- +goose Up
-- Account deletion: status 'deleted' (email and username erased), and the
-- time of the newest Clerk account event applied to the user, so that an
-- older event delivered late never undoes a newer one.
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_status_check;
ALTER TABLE users ADD CONSTRAINT users_status_check CHECK (status IN ('active', 'suspended', 'deleted'));
ALTER TABLE users ADD COLUMN IF NOT EXISTS clerk_event_at timestamptz;

-- Every Clerk webhook delivery (Svix message id) applied: a duplicate finds
-- its row and does nothing. Recorded in the same transaction as its effect.
CREATE TABLE IF NOT EXISTS clerk_events (
    svix_id     text        PRIMARY KEY,
    type        text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE IF EXISTS clerk_events;
ALTER TABLE users DROP COLUMN IF EXISTS clerk_event_at;
UPDATE users SET status = 'suspended' WHERE status = 'deleted';
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_status_check;
ALTER TABLE users ADD CONSTRAINT users_status_check CHECK (status IN ('active', 'suspended'));
