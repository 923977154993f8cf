-- +goose Up
-- The usage ledger: one row per metered request, written by the ledger's
-- drain from the Redis usage stream. event_id is unique per admitted
-- request, so a drain that runs twice (a retry, a claimed batch) inserts
-- nothing twice. No personal data: the Clerk id only.
-- Ids compare bytewise (COLLATE "C"): they are not words, and a locale's
-- collation would make every index insert slower.
CREATE TABLE IF NOT EXISTS usage_events (
    event_id            uuid        PRIMARY KEY,
    request_id          text        NOT NULL,
    clerk_user_id       text        COLLATE "C" NOT NULL,
    model               text        COLLATE "C" NOT NULL,
    endpoint            text        NOT NULL,
    input_tokens        bigint      NOT NULL,
    cached_input_tokens bigint      NOT NULL,
    output_tokens       bigint      NOT NULL,
    cost_micros         bigint      NOT NULL,
    source              text        NOT NULL,
    outcome             text        NOT NULL,
    stream              boolean     NOT NULL,
    at                  timestamptz NOT NULL
);
-- A user's events by time (support: "what did this request cost?").
CREATE INDEX IF NOT EXISTS usage_events_user_at ON usage_events (clerk_user_id, at);
-- Retention deletes by age. Events arrive in about time order, so a BRIN
-- index (a few pages, nearly free to maintain) finds the old ones.
CREATE INDEX IF NOT EXISTS usage_events_at ON usage_events USING brin (at);

-- The same events summed per user, UTC day and model, in the same
-- statement that inserts them: GET /v1/usage and `sas-gateway usage` read
-- at most a row per day and model, however many requests a user made.
CREATE TABLE IF NOT EXISTS usage_daily (
    clerk_user_id       text   COLLATE "C" NOT NULL,
    day                 date   NOT NULL,
    model               text   COLLATE "C" NOT NULL,
    requests            bigint NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    cost_micros         bigint NOT NULL,
    PRIMARY KEY (clerk_user_id, day, model)
);
CREATE INDEX IF NOT EXISTS usage_daily_day ON usage_daily (day);

-- +goose Down
DROP TABLE IF EXISTS usage_daily;
DROP TABLE IF EXISTS usage_events;
