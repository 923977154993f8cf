package postgres_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/shared/wire"
)

// connections runs a test against the store connected directly and through
// PgBouncer in transaction mode (what Neon's -pooler URL is).
func connections(t *testing.T, test func(t *testing.T, db *postgres.DB)) {
	for _, via := range []string{"direct", "pgbouncer"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			d := testenv.NewDatabase(t)
			url := d.URL
			if via == "pgbouncer" {
				url = d.PoolerURL
			}
			db, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closeDB(t, db) })
			test(t, db)
		})
	}
}

// closeDB closes db, but gives up after 10 s with an error. pgxpool's Close
// waits until every acquired connection is released, and a test that
// panics inside a query loop (an index out of range before rows.Close)
// never releases its one: the cleanups run before the panic is reported,
// so a plain db.Close there hung the package until go test's timeout
// instead of failing it at once.
func closeDB(t *testing.T, db *postgres.DB) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		db.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Error("the pool did not close within 10 s: a connection is still acquired (rows never closed?)")
	}
}

var ignoreTimes = cmpopts.IgnoreFields(gateway.User{}, "CreatedAt", "UpdatedAt")

func TestUpsertCreatesThenUpdates(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		u, err := db.UpsertUser(ctx, gateway.Identity{Subject: "user_abc123", Email: "steve@example.com", Username: "Steve"})
		if err != nil {
			t.Fatal(err)
		}
		want := gateway.User{ClerkUserID: "user_abc123", Email: "steve@example.com", Username: "Steve", Plan: "free", Status: "active"}
		if diff := cmp.Diff(want, u, ignoreTimes); diff != "" {
			t.Fatalf("created user (-want +got):\n%s", diff)
		}
		u2, err := db.UpsertUser(ctx, gateway.Identity{Subject: "user_abc123", Email: "steve@new.example.com", Username: "Steve"})
		if err != nil {
			t.Fatal(err)
		}
		want.Email = "steve@new.example.com"
		if diff := cmp.Diff(want, u2, ignoreTimes); diff != "" {
			t.Fatalf("updated user (-want +got):\n%s", diff)
		}
		if !u2.UpdatedAt.After(u.UpdatedAt) || !u2.CreatedAt.Equal(u.CreatedAt) {
			t.Errorf("timestamps: created %v→%v, updated %v→%v", u.CreatedAt, u2.CreatedAt, u.UpdatedAt, u2.UpdatedAt)
		}
		// A new username is kept too. (A build that stopped updating it once
		// passed every test.)
		u3, err := db.UpsertUser(ctx, gateway.Identity{Subject: "user_abc123", Email: "steve@new.example.com", Username: "Stevie"})
		want.Username = "Stevie"
		if diff := cmp.Diff(want, u3, ignoreTimes); err != nil || diff != "" {
			t.Fatalf("renamed user (-want +got):\n%s%v", diff, err)
		}
		got, _ := db.User(ctx, "user_abc123")
		if diff := cmp.Diff(want, got, ignoreTimes); diff != "" {
			t.Fatalf("stored after the rename (-want +got):\n%s", diff)
		}
	})
}

// TestMissingClaimsKeepStoredValues: a token without email or name (a
// provider that puts them only at its userinfo endpoint) never erases
// what is stored, and writes nothing.
func TestMissingClaimsKeepStoredValues(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		first, err := db.UpsertUser(ctx, gateway.Identity{Subject: "user_claims", Email: "steve@example.com", Username: "Steve"})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []gateway.Identity{{Subject: "user_claims"}, {Subject: "user_claims", Username: "Steve"}, {Subject: "user_claims", Email: "steve@example.com"}} {
			u, err := db.UpsertUser(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, u); diff != "" {
				t.Errorf("after a token with %+v (-want +got):\n%s", id, diff)
			}
		}
		// Only the username changes: the email stays.
		u, _ := db.UpsertUser(ctx, gateway.Identity{Subject: "user_claims", Username: "Stevie"})
		if u.Email != "steve@example.com" || u.Username != "Stevie" {
			t.Errorf("after a rename without email: %+v", u)
		}
	})
}

// TestUpsertUnchangedWritesNothing: a repeated call with the same claims
// must not write a new row version (checked through xmin, the id of the
// transaction that wrote the row version).
func TestUpsertUnchangedWritesNothing(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		id := gateway.Identity{Subject: "user_1", Email: "a@example.com", Username: "A"}
		first, err := db.UpsertUser(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		xmin := func() string {
			var x string
			if err := db.Pool().QueryRow(ctx, `SELECT xmin::text FROM users WHERE clerk_user_id = $1`, id.Subject).Scan(&x); err != nil {
				t.Fatal(err)
			}
			return x
		}
		before := xmin()
		for range 5 {
			u, err := db.UpsertUser(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(first, u); diff != "" {
				t.Fatalf("repeated upsert returned a different row (-want +got):\n%s", diff)
			}
		}
		if after := xmin(); after != before {
			t.Errorf("row rewritten by unchanged upserts: xmin %s → %s", before, after)
		}
		// Empty claims are stored as NULL and compare equal next time.
		empty := gateway.Identity{Subject: "user_2"}
		if _, err := db.UpsertUser(ctx, empty); err != nil {
			t.Fatal(err)
		}
		var x1, x2 string
		q := `SELECT xmin::text FROM users WHERE clerk_user_id = 'user_2'`
		_ = db.Pool().QueryRow(ctx, q).Scan(&x1)
		if _, err := db.UpsertUser(ctx, empty); err != nil {
			t.Fatal(err)
		}
		_ = db.Pool().QueryRow(ctx, q).Scan(&x2)
		if x1 == "" || x1 != x2 {
			t.Errorf("user without email rewritten: xmin %q → %q", x1, x2)
		}
	})
}

// TestUpsertConcurrentFirstCalls: 100 concurrent first sign-ins of one new
// user make one row, and every call gets it.
func TestUpsertConcurrentFirstCalls(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		id := gateway.Identity{Subject: "user_race", Email: "race@example.com", Username: "Race"}
		var wg sync.WaitGroup
		errs := make(chan error, 100)
		for range 100 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				u, err := db.UpsertUser(ctx, id)
				if err == nil && u.ClerkUserID != id.Subject {
					t.Errorf("got user %q", u.ClerkUserID)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		var n int
		if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("%d rows, want 1", n)
		}
	})
}

func TestSetPlanAndStatus(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		if _, err := db.UpsertUser(ctx, gateway.Identity{Subject: "user_1"}); err != nil {
			t.Fatal(err)
		}
		u, err := db.SetPlan(ctx, "user_1", "pro")
		if err != nil || u.Plan != "pro" {
			t.Fatalf("SetPlan = %+v, %v", u, err)
		}
		u, err = db.SetStatus(ctx, "user_1", "suspended")
		if err != nil || u.Status != "suspended" || u.Active() {
			t.Fatalf("SetStatus = %+v, %v", u, err)
		}
		if got, _ := db.User(ctx, "user_1"); got.Plan != "pro" || got.Status != "suspended" {
			t.Errorf("User = %+v", got)
		}
		for name, err := range map[string]error{
			"unknown plan":   second(db.SetPlan(ctx, "user_1", "enterprise")),
			"unknown status": second(db.SetStatus(ctx, "user_1", "banned")),
		} {
			if wire.ErrorCode(err) != wire.CodeBadRequest {
				t.Errorf("%s: err = %v, want bad_request", name, err)
			}
		}
		for name, err := range map[string]error{
			"set-plan":   second(db.SetPlan(ctx, "user_nobody", "pro")),
			"set-status": second(db.SetStatus(ctx, "user_nobody", "active")),
			"show":       second(db.User(ctx, "user_nobody")),
		} {
			if wire.ErrorCode(err) != wire.CodeNotFound {
				t.Errorf("%s of unknown user: err = %v, want not_found", name, err)
			}
		}
	})
}

func second[T any](_ T, err error) error { return err }

func TestMigrateIsIdempotent(t *testing.T) {
	d := testenv.NewDatabase(t) // migrated once
	ctx := context.Background()
	db, err := postgres.Open(ctx, d.PoolerURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Again, twice at once, through the pooler: the table lock serialises.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := db.Migrate(ctx, testenv.Logger(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var cols string
	err = db.Pool().QueryRow(ctx, `SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)
		FROM information_schema.columns WHERE table_name = 'users'`).Scan(&cols)
	if err != nil {
		t.Fatal(err)
	}
	want := "id:uuid,clerk_user_id:text,email:text,username:text,plan:text,status:text," +
		"created_at:timestamp with time zone,updated_at:timestamp with time zone," +
		"stripe_customer_id:text,stripe_subscription_id:text,last_billing_event:text,last_billing_event_at:timestamp with time zone," +
		"clerk_event_at:timestamp with time zone,changed_xid:xid8"
	if cols != want {
		t.Errorf("users columns:\n got %s\nwant %s", cols, want)
	}
	// The CHECK constraints hold the contract's enums.
	_, err = db.Pool().Exec(ctx, `INSERT INTO users (clerk_user_id, plan) VALUES ('x', 'gold')`)
	if err == nil || !strings.Contains(err.Error(), "check") {
		t.Errorf("plan 'gold' accepted: %v", err)
	}
	_, err = db.Pool().Exec(ctx, `INSERT INTO users (clerk_user_id, status) VALUES ('x', 'gone')`)
	if err == nil || !strings.Contains(err.Error(), "check") {
		t.Errorf("status 'gone' accepted: %v", err)
	}
	if _, err = db.Pool().Exec(ctx, `INSERT INTO users (clerk_user_id, status) VALUES ('user_migrate_deleted', 'deleted')`); err != nil {
		t.Errorf("status 'deleted' refused: %v", err)
	}
}

// TestUnavailable: an unreachable database is "unavailable" with a retry
// hint, quickly, and the same pool recovers when it comes back.
func TestUnavailable(t *testing.T) {
	d := testenv.NewDatabase(t)
	proxy := testenv.NewProxy(t, hostPort(t, d.URL))
	db, err := postgres.Open(context.Background(), strings.Replace(d.URL, hostPort(t, d.URL), proxy.Addr(), 1))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	id := gateway.Identity{Subject: "user_1"}
	if _, err := db.UpsertUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	start := time.Now()
	_, err = db.UpsertUser(ctx, id)
	e, ok := err.(*wire.Error)
	if !ok || e.Code != wire.CodeUnavailable || e.RetryAfter <= 0 {
		t.Fatalf("err = %#v, want unavailable with RetryAfter", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v to fail, want < 2s", d)
	}
	if err := db.Ping(ctx); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("Ping = %v, want unavailable", err)
	}
	// The usage reads too (the operator's report and GET /v1/usage).
	now := time.Now()
	if _, err := db.UsageByUser(ctx, now.AddDate(0, 0, -1), now, ""); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("UsageByUser = %v, want unavailable", err)
	}
	if _, err := db.Usage(ctx, "user_1", now.AddDate(0, 0, -1), now); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("Usage = %v, want unavailable", err)
	}
	proxy.Restore()
	if _, err := db.UpsertUser(ctx, id); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

func hostPort(t *testing.T, url string) string {
	t.Helper()
	_, rest, _ := strings.Cut(url, "@")
	hp, _, _ := strings.Cut(rest, "/")
	return hp
}

func TestOpenRejectsBadURLWithoutLeakingIt(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://u:s3cr3t-pw@host:notaport/db")
	if err == nil {
		t.Fatal("no error")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Errorf("error leaks the password: %v", err)
	}
}

// BenchmarkUpsertUnchanged measures the steady-state upsert (user exists,
// claims unchanged) in the pooler-safe exec mode this package picks, beside
// pgx's default statement cache (direct connections only), and through
// PgBouncer.
func BenchmarkUpsertUnchanged(b *testing.B) {
	d := testenv.NewDatabase(b)
	for _, bc := range []struct{ name, url string }{
		{"exec", d.URL},
		{"cache_statement", d.URL + "&default_query_exec_mode=cache_statement"},
		{"exec_via_pgbouncer", d.PoolerURL},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db, err := postgres.Open(context.Background(), bc.url)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			id := gateway.Identity{Subject: "user_bench", Email: "b@example.com", Username: "B"}
			ctx := context.Background()
			if _, err := db.UpsertUser(ctx, id); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := db.UpsertUser(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestChangedUsers: the change feed's query lists every user a
// transaction inserted or really changed after the previous poll's since,
// whoever wrote it — the store's methods, a bare UPDATE, an INSERT; a
// user inserted by a transaction left open across polls is listed by the
// first poll after its commit; a write that changes nothing leaves the
// row's stamp alone; past the limit it says so (limit+1 ids). (Lists may
// repeat a user: the test cluster's other databases hold its oldest
// running transaction back, and a repeat is only an extra cache miss.)
func TestChangedUsers(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		for _, u := range []string{"user_a", "user_b", "user_c"} {
			if _, err := db.UpsertUser(ctx, gateway.Identity{Subject: u, Email: u + "@example.com"}); err != nil {
				t.Fatal(err)
			}
		}
		stamp := func(user string) string {
			t.Helper()
			var x *string
			if err := db.Pool().QueryRow(ctx, `SELECT changed_xid::text FROM users WHERE clerk_user_id = $1`, user).Scan(&x); err != nil || x == nil {
				t.Fatalf("%s: stamp %v, %v", user, x, err)
			}
			return *x
		}
		poll := func(since string, limit int) ([]string, string) {
			t.Helper()
			changes, next, err := db.ChangedUsers(ctx, since, limit)
			if err != nil || next == "" {
				t.Fatalf("ChangedUsers(%q): %v, next %q", since, err, next)
			}
			var ids []string
			for _, c := range changes {
				if c.Stamp != stamp(c.ClerkUserID) {
					t.Errorf("%s listed with stamp %s, its row's is %s", c.ClerkUserID, c.Stamp, stamp(c.ClerkUserID))
				}
				ids = append(ids, c.ClerkUserID)
			}
			return ids, next
		}
		ids, since := poll("", 100)
		if len(ids) != 0 {
			t.Fatalf("first poll: %v, want none", ids)
		}
		if _, err := db.SetPlan(ctx, "user_a", "pro"); err != nil {
			t.Fatal(err)
		}
		c := stamp("user_c")
		for _, q := range []string{
			`UPDATE users SET status = 'suspended' WHERE clerk_user_id = 'user_b'`,
			`UPDATE users SET plan = plan WHERE clerk_user_id = 'user_c'`,
			`INSERT INTO users (clerk_user_id, status) VALUES ('user_d', 'deleted')`,
		} {
			if _, err := db.Pool().Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		ids, since = poll(since, 100)
		for _, want := range []string{"user_a", "user_b", "user_d"} {
			if !slices.Contains(ids, want) {
				t.Errorf("second poll: %v; want %s (SetPlan, a bare UPDATE, an INSERT)", ids, want)
			}
		}
		if got := stamp("user_c"); got != c {
			t.Errorf("a write that changed nothing moved the stamp: %s → %s", c, got)
		}
		// A transaction left open across polls.
		conn, err := db.Pool().Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Release()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users (clerk_user_id, status) VALUES ('user_e', 'deleted')`); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if ids, since = poll(since, 100); slices.Contains(ids, "user_e") {
				t.Fatalf("an uncommitted change listed: %v", ids)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if ids, since = poll(since, 100); !slices.Contains(ids, "user_e") {
			t.Errorf("after the long transaction's commit: %v, want user_e", ids)
		}
		// Over the limit: limit+1 ids say "too many".
		if _, err := db.Pool().Exec(ctx, `UPDATE users SET plan = 'pro' WHERE plan = 'free'`); err != nil {
			t.Fatal(err)
		}
		if ids, _ = poll(since, 1); len(ids) != 2 {
			t.Errorf("a bulk update with limit 1: %v, want 2 ids (over the limit)", ids)
		}
	})
}
