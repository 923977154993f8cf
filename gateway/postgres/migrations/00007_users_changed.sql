-- +goose Up
-- The user cache's change feed (gateway/userfeed): every instance asks
-- each second which users changed since its last poll, and drops them
-- from memory. So every update of a row moves updated_at, whoever makes it
-- (the gateway, `sas-gateway users`, an UPDATE typed into Neon's console),
-- through a trigger; a write that changes nothing does not. The index
-- keeps the poll a range scan on the newest rows.
CREATE INDEX IF NOT EXISTS users_updated_at_idx ON users (updated_at);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END
$$;
-- +goose StatementEnd

DROP TRIGGER IF EXISTS users_touch ON users;
CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW WHEN (OLD IS DISTINCT FROM NEW) EXECUTE FUNCTION users_touch();

-- +goose Down
DROP TRIGGER IF EXISTS users_touch ON users;
DROP FUNCTION IF EXISTS users_touch();
DROP INDEX IF EXISTS users_updated_at_idx;
