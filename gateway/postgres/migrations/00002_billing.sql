-- +goose Up
-- Stripe: the user's customer (created once, reused), their subscription,
-- and the last billing event seen for them.
ALTER TABLE users ADD COLUMN IF NOT EXISTS stripe_customer_id text UNIQUE;
ALTER TABLE users ADD COLUMN IF NOT EXISTS stripe_subscription_id text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_billing_event text;
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_billing_event_at timestamptz;

-- Every webhook event, by id: a duplicate delivery finds its row and does
-- nothing. Recorded in the same transaction as the event's effect.
CREATE TABLE IF NOT EXISTS stripe_events (
    id          text        PRIMARY KEY,
    type        text        NOT NULL,
    created     timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- Each subscription's state from the newest event applied to it, ordered
-- by (created, rank) with rank created 0 < updated 1 < deleted 2, so that
-- an older event delivered late never overwrites a newer state and a
-- same-second tie goes to the later stage. A user is pro while any of their
-- subscriptions says pro.
CREATE TABLE IF NOT EXISTS stripe_subscriptions (
    id            text        PRIMARY KEY,
    clerk_user_id text        NOT NULL,
    last_created  timestamptz NOT NULL,
    last_rank     smallint    NOT NULL,
    plan          text        NOT NULL CHECK (plan IN ('free', 'pro'))
);
CREATE INDEX IF NOT EXISTS stripe_subscriptions_user ON stripe_subscriptions (clerk_user_id);

-- +goose Down
DROP TABLE IF EXISTS stripe_subscriptions;
DROP TABLE IF EXISTS stripe_events;
ALTER TABLE users DROP COLUMN IF EXISTS last_billing_event_at;
ALTER TABLE users DROP COLUMN IF EXISTS last_billing_event;
ALTER TABLE users DROP COLUMN IF EXISTS stripe_subscription_id;
ALTER TABLE users DROP COLUMN IF EXISTS stripe_customer_id;
