-- +goose Up
-- gen_random_uuid() is built in since PostgreSQL 13 (Neon runs 15+).
CREATE TABLE IF NOT EXISTS users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    clerk_user_id text        NOT NULL UNIQUE,
    email         text,
    username      text,
    plan          text        NOT NULL DEFAULT 'free'   CHECK (plan IN ('free', 'pro')),
    status        text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE IF EXISTS users;
