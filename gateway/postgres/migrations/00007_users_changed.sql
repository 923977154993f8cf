-- +goose Up
-- The user cache's change feed (gateway/userfeed): every instance asks
-- each second which users changed since its last poll, and drops them
-- from memory. A trigger stamps every inserted row, and every updated row
-- that actually changed, with the writing transaction's id, whoever writes
-- (the gateway, `sas-gateway users`, a statement typed into Neon's
-- console). A poll asks for the rows stamped at or after the oldest
-- transaction still running at the previous poll: a change committed
-- later than any poll that could not see it is still found, however long
-- its transaction stayed open — no clocks involved.
ALTER TABLE users ADD COLUMN IF NOT EXISTS changed_xid xid8;
CREATE INDEX IF NOT EXISTS users_changed_xid_idx ON users (changed_xid);

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD IS NOT DISTINCT FROM NEW THEN
        RETURN NEW; -- a write that changes nothing is not a change
    END IF;
    NEW.changed_xid := pg_current_xact_id();
    RETURN NEW;
END
$$;
-- +goose StatementEnd

DROP TRIGGER IF EXISTS users_touch ON users;
CREATE TRIGGER users_touch BEFORE INSERT OR UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_touch();

-- +goose Down
DROP TRIGGER IF EXISTS users_touch ON users;
DROP FUNCTION IF EXISTS users_touch();
DROP INDEX IF EXISTS users_changed_xid_idx;
ALTER TABLE users DROP COLUMN IF EXISTS changed_xid;
