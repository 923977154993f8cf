// Package postgres is the gateway's user store on PostgreSQL (Neon in
// production), with its schema as embedded goose migrations.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/shared/wire"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DefaultQueryTimeout bounds each store call, so a database that stops
// answering turns into 503s within 2 s, not hung requests.
const DefaultQueryTimeout = 1500 * time.Millisecond

// DB is the user store. It is safe for concurrent use.
//
// Every method that changes a user's row tells the function given to
// AnnounceTo, after its transaction committed, which user it changed: the
// store announces its own changes, so no write path can forget to (the
// gateway drops its cached copy and tells the other instances).
type DB struct {
	pool         *pgxpool.Pool
	queryTimeout time.Duration
	announce     func(ctx context.Context, clerkUserID string)
}

// AnnounceTo makes f hear of every user the store changes, after the
// commit. Call it before the store is used.
func (db *DB) AnnounceTo(f func(ctx context.Context, clerkUserID string)) { db.announce = f }

// changed announces clerkUserID's change when err is nil.
func (db *DB) changed(ctx context.Context, clerkUserID string, err error) {
	if err == nil && db.announce != nil {
		db.announce(ctx, clerkUserID)
	}
}

// Open connects a pool to url. It does not wait for the database: the pool
// dials lazily, so the gateway starts (and /healthz answers) while Postgres
// is unreachable, and /readyz tells the truth.
//
// Unless the URL sets default_query_exec_mode, queries use pgx's "exec"
// mode: parameters go in one Parse/Bind/Execute round trip on the unnamed
// statement, which works through a transaction-mode pooler (Neon's -pooler
// URL is PgBouncer) where named prepared statements — pgx's default cache —
// would land on another server connection and fail.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's error quotes the URL with its password: never pass it on.
		return nil, errors.New("postgres: DATABASE_URL is not a valid connection URL")
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open pool: %w", err)
	}
	return &DB{pool: pool, queryTimeout: DefaultQueryTimeout}, nil
}

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Pool returns the underlying pool, for tests and tools.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	return classify(db.pool.Ping(ctx))
}

// Migrate applies the embedded migrations that are not applied yet. It is
// idempotent and safe to run from several machines at once: goose's table
// lock (not a session advisory lock, which a transaction pooler would break)
// serialises concurrent runs.
func (db *DB) Migrate(ctx context.Context, logger *slog.Logger) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	locker, err := lock.NewPostgresTableLocker()
	if err != nil {
		return fmt.Errorf("migrate: locker: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(db.pool)
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys,
		goose.WithLocker(locker), goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		logger.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration)
	}
	return nil
}

const userColumns = `clerk_user_id, coalesce(email, ''), coalesce(username, ''), plan, status, created_at, updated_at`

// upsertSQL inserts the user or updates email/username only when a claim
// brings a new value, so a repeated sign-in writes nothing (no dead tuples,
// no WAL). A claim the token lacks (empty: stored as NULL) keeps what is
// stored: providers put email and name in the ID token or not, and a token
// without them says nothing about the user.
// When the row exists unchanged, the INSERT returns no row and the second
// branch reads it. Under READ COMMITTED that read uses the statement's
// snapshot, which misses a row committed by a concurrent first insert that
// our ON CONFLICT waited for; UpsertUser then reads again (see there).
const upsertSQL = `
WITH up AS (
    INSERT INTO users (clerk_user_id, email, username)
    VALUES ($1, nullif($2, ''), nullif($3, ''))
    ON CONFLICT (clerk_user_id) DO UPDATE
        SET email = coalesce(EXCLUDED.email, users.email),
            username = coalesce(EXCLUDED.username, users.username), updated_at = now()
        WHERE users.status <> 'deleted'
          AND ((EXCLUDED.email IS NOT NULL AND users.email IS DISTINCT FROM EXCLUDED.email)
            OR (EXCLUDED.username IS NOT NULL AND users.username IS DISTINCT FROM EXCLUDED.username))
    RETURNING ` + userColumns + `
)
SELECT * FROM up
UNION ALL
SELECT ` + userColumns + ` FROM users WHERE clerk_user_id = $1 AND NOT EXISTS (SELECT 1 FROM up)`

// UpsertUser creates the user of id, or brings its email and username up to
// date, and returns the row.
//
// The common case — a known user whose claims did not change — is one
// primary-key SELECT, which in the pooler-safe exec mode (parsed and planned
// on every call) costs about half the upsert statement. Only a new user or
// changed claims run the upsert, which is race-free on its own.
//
// Errors: unavailable when the database cannot be reached in time.
func (db *DB) UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	u, err := db.userByClerkID(ctx, id.Subject)
	if err == nil && !id.Changes(u) {
		return u, nil
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return u, classify(err)
	}
	// A first sign-in is not announced: no instance holds the user yet,
	// and the cache asking would forget its own fresh read.
	known := err == nil
	u, err = scanUser(db.pool.QueryRow(ctx, upsertSQL, id.Subject, id.Email, id.Username))
	if errors.Is(err, pgx.ErrNoRows) {
		// A concurrent first insert committed after our snapshot: a new
		// statement sees it.
		u, err = db.userByClerkID(ctx, id.Subject)
		return u, classify(err)
	}
	if known {
		db.changed(ctx, id.Subject, err)
	}
	return u, classify(err)
}

// User returns the user with the given Clerk id.
//
// Errors: not_found, unavailable.
func (db *DB) User(ctx context.Context, clerkUserID string) (gateway.User, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	u, err := db.userByClerkID(ctx, clerkUserID)
	return u, classify(err)
}

func (db *DB) userByClerkID(ctx context.Context, clerkUserID string) (gateway.User, error) {
	return scanUser(db.pool.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE clerk_user_id = $1`, clerkUserID))
}

// ChangedUsers returns the users whose row a transaction at or after
// since changed (inserted, or updated for real), each with its change's
// stamp, at most limit+1 of them (more than limit: too many to list,
// forget everyone), and the next since: the oldest transaction still
// running now. since is opaque; "" starts from now. A change committed
// after this call is found by a later one whose since is at most its
// transaction's id, as every next since is; while a transaction stays
// open, later calls list the same changes again (same stamps).
func (db *DB) ChangedUsers(ctx context.Context, since string, limit int) (changes []gateway.UserChange, next string, err error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var from *string
	if since != "" {
		from = &since
	}
	var ids, stamps []string
	err = db.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text,
		coalesce(array_agg(c.clerk_user_id), '{}'), coalesce(array_agg(c.changed_xid::text), '{}')
		FROM (SELECT clerk_user_id, changed_xid FROM users
			WHERE $1::text IS NOT NULL AND changed_xid >= $1::text::xid8 LIMIT $2 + 1) c`,
		from, limit).Scan(&next, &ids, &stamps)
	for i := range ids {
		changes = append(changes, gateway.UserChange{ClerkUserID: ids[i], Stamp: stamps[i]})
	}
	return changes, next, classify(err)
}

// SetPlan changes a user's plan.
//
// Errors: bad_request (unknown plan), not_found, unavailable.
func (db *DB) SetPlan(ctx context.Context, clerkUserID, plan string) (gateway.User, error) {
	if !gateway.ValidPlan(plan) {
		return gateway.User{}, wire.Errorf(wire.CodeBadRequest, "plan must be %q or %q", wire.PlanFree, wire.PlanPro)
	}
	return db.set(ctx, "plan", clerkUserID, plan)
}

// SetStatus changes a user's status; "deleted" erases the email and
// username too (DeleteUser).
//
// Errors: bad_request (unknown status), not_found, unavailable.
func (db *DB) SetStatus(ctx context.Context, clerkUserID, status string) (gateway.User, error) {
	if !gateway.ValidStatus(status) {
		return gateway.User{}, wire.Errorf(wire.CodeBadRequest, "status must be %q, %q or %q", wire.StatusActive, wire.StatusSuspended, wire.StatusDeleted)
	}
	if status == wire.StatusDeleted {
		return db.DeleteUser(ctx, clerkUserID)
	}
	return db.set(ctx, "status", clerkUserID, status)
}

// DeleteUser marks the user deleted and erases their email and username.
// Their usage events stay (they hold the Clerk id only). Deleting twice is
// fine.
//
// Errors: not_found, unavailable.
func (db *DB) DeleteUser(ctx context.Context, clerkUserID string) (gateway.User, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	u, err := scanUser(db.pool.QueryRow(ctx, `UPDATE users SET email = NULL, username = NULL, status = 'deleted', updated_at = now()
		WHERE clerk_user_id = $1 RETURNING `+userColumns, clerkUserID))
	if errors.Is(err, pgx.ErrNoRows) {
		return u, wire.Errorf(wire.CodeNotFound, "no user with Clerk id %q", clerkUserID)
	}
	db.changed(ctx, clerkUserID, err)
	return u, classify(err)
}

// ApplyAccountEvent applies a Clerk account event once per delivery id, in
// one transaction with the record of that id: user.updated brings the
// email and username up to date unless a newer event was applied or the
// account is deleted (an unknown user is left unknown); user.deleted
// erases them and sets the status deleted — for an unknown user too, so
// that a token issued before the deletion cannot create the account again.
// It reports false for a duplicate delivery.
//
// Errors: unavailable, internal.
func (db *DB) ApplyAccountEvent(ctx context.Context, ev gateway.AccountEvent) (bool, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, classify(err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO clerk_events (svix_id, type) VALUES ($1, $2) ON CONFLICT (svix_id) DO NOTHING`, ev.ID, ev.Type)
	if err != nil {
		return false, classify(err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	switch ev.Type {
	case gateway.AccountUpdated:
		_, err = tx.Exec(ctx, `UPDATE users SET email = coalesce(nullif($2, ''), email), username = coalesce(nullif($3, ''), username),
			clerk_event_at = $4, updated_at = now()
			WHERE clerk_user_id = $1 AND status <> 'deleted' AND (clerk_event_at IS NULL OR clerk_event_at <= $4)`,
			ev.ClerkUserID, ev.Email, ev.Username, ev.At)
	case gateway.AccountDeleted:
		_, err = tx.Exec(ctx, `INSERT INTO users (clerk_user_id, status, clerk_event_at) VALUES ($1, 'deleted', $2)
			ON CONFLICT (clerk_user_id) DO UPDATE SET email = NULL, username = NULL, status = 'deleted',
				clerk_event_at = greatest(users.clerk_event_at, EXCLUDED.clerk_event_at), updated_at = now()`,
			ev.ClerkUserID, ev.At)
	}
	if err != nil {
		return false, classify(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, classify(err)
	}
	db.changed(ctx, ev.ClerkUserID, nil)
	return true, nil
}

// set updates one column; column is a constant chosen by the caller.
func (db *DB) set(ctx context.Context, column, clerkUserID, value string) (gateway.User, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	u, err := scanUser(db.pool.QueryRow(ctx,
		`UPDATE users SET `+column+` = $2, updated_at = now() WHERE clerk_user_id = $1 RETURNING `+userColumns,
		clerkUserID, value))
	if errors.Is(err, pgx.ErrNoRows) {
		return u, wire.Errorf(wire.CodeNotFound, "no user with Clerk id %q", clerkUserID)
	}
	db.changed(ctx, clerkUserID, err)
	return u, classify(err)
}

func scanUser(row pgx.Row) (gateway.User, error) {
	var u gateway.User
	err := row.Scan(&u.ClerkUserID, &u.Email, &u.Username, &u.Plan, &u.Status, &u.CreatedAt, &u.UpdatedAt)
	return u, err
}

// bound applies the query timeout; an earlier deadline of ctx still wins.
func (db *DB) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.queryTimeout)
}

// classify turns a pgx error into the contract's codes: a server-side SQL
// error is a bug (internal); anything else — refused connections, timeouts,
// a closed pool — means the database is unavailable, which clients may retry.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*wire.Error](err); ok {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &wire.Error{Code: wire.CodeNotFound, Message: "Not found.", Err: err}
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && !transient(pgErr.Code) {
		return &wire.Error{Code: wire.CodeInternal, Message: "Internal error.", Err: err}
	}
	return &wire.Error{Code: wire.CodeUnavailable, Message: "The database is unavailable; try again shortly.", RetryAfter: 2, Err: err}
}

// transient reports whether a SQLSTATE means "try again later": connection
// exceptions (08), insufficient resources such as too many connections (53),
// operator intervention such as a shutdown or a starting server (57), and
// system errors (58).
func transient(sqlstate string) bool {
	switch sqlstate[:min(2, len(sqlstate))] {
	case "08", "53", "57", "58":
		return true
	}
	return false
}
