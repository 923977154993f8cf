package ledger_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/ledger"
	"github.com/signals-sorcery/sas/gateway/memstore"
	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/quota"
)

func random() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func openDB(t *testing.T, url string) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// settle appends n events for user to stream the way the gateway does:
// through a limiter's admission and settlement.
func settle(t *testing.T, rdb *redis.Client, stream, user string, n int) {
	t.Helper()
	l := quota.NewLimiter(rdb, quota.LimiterOptions{UsageStream: stream})
	plan := quota.Plan{RequestsPerMinute: 1 << 30, RequestsPerDay: 1 << 30, TokensPerDay: 1 << 40}
	for i := range n {
		a, err := l.Admit(context.Background(), user, plan, quota.Reservation{Tokens: 100, Cost: 10})
		if err != nil {
			t.Fatal(err)
		}
		e := gateway.UsageEvent{ID: a.ID(), RequestID: fmt.Sprint("req-", i), ClerkUserID: user, Model: "gpt-4o-mini", Endpoint: "chat.completions",
			InputTokens: 10, CachedInputTokens: 2, OutputTokens: 5, CostMicros: 7, Source: "upstream", Outcome: "complete", At: time.Now()}
		if err := l.Settle(context.Background(), a, quota.Settlement{Tokens: 15, Cost: 7, Event: &e}); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs a drainer until the test ends (or stop is called) and returns
// stop, which waits for its last flush.
func start(t *testing.T, o ledger.Options) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d := ledger.New(o) // here, not in the goroutine: New copies the client's options
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func total(t *testing.T, db *postgres.DB, user string) gateway.UsageFigures {
	t.Helper()
	days, err := db.Usage(context.Background(), user, time.Now().AddDate(0, 0, -1), time.Now().AddDate(0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	var f gateway.UsageFigures
	for _, d := range days {
		for _, m := range d.Models {
			f.Add(m.UsageFigures)
		}
	}
	return f
}

func count(t *testing.T, db *postgres.DB, user string) int {
	t.Helper()
	var n int
	if err := db.Pool().QueryRow(context.Background(), "SELECT count(*) FROM usage_events WHERE clerk_user_id = $1", user).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDrainRecordsEachEventOnce: settled events reach Postgres through the
// pooler, with the daily sums, and leave the stream; an event delivered
// twice is recorded once.
func TestDrainRecordsEachEventOnce(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	settle(t, rdb, stream, user, 1200) // several batches
	m := metrics.New()
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db, Metrics: m})
	testenv.WaitFor(t, "1200 events", 10*time.Second, func() bool { return count(t, db, user) == 1200 })
	want := gateway.UsageFigures{Requests: 1200, InputTokens: 12000, CachedInputTokens: 2400, OutputTokens: 6000, CostMicros: 8400}
	if got := total(t, db, user); got != want {
		t.Errorf("daily sums %+v, want %+v", got, want)
	}
	testenv.WaitFor(t, "an empty stream", 5*time.Second, func() bool { return rdb.XLen(context.Background(), stream).Val() == 0 })

	// The same event again (a redelivery): nothing changes.
	var e gateway.UsageEvent
	if err := db.Pool().QueryRow(context.Background(), "SELECT event_id FROM usage_events WHERE clerk_user_id = $1 LIMIT 1", user).Scan(&e.ID); err != nil {
		t.Fatal(err)
	}
	e.ClerkUserID, e.Model, e.InputTokens, e.At = user, "gpt-4o-mini", 999, time.Now()
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{ledger.Field, ledger.Encode(e)}}).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the redelivery drained", 5*time.Second, func() bool { return rdb.XLen(context.Background(), stream).Val() == 0 })
	if got := total(t, db, user); got != want || count(t, db, user) != 1200 {
		t.Errorf("after a redelivery: %+v (%d events)", got, count(t, db, user))
	}
}

// TestDrainRecordsUpstream: the serving upstream and the attempt count
// reach the usage_events row through the stream, and an entry an older
// build wrote (without them) lands with "" and 0.
func TestDrainRecordsUpstream(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	ctx := context.Background()
	failedOver := gateway.UsageEvent{ID: testenv.UUID(), RequestID: "req-new", ClerkUserID: user, Model: "gpt-4o-mini",
		Endpoint: "chat.completions", InputTokens: 10, OutputTokens: 5, CostMicros: 7, Source: "upstream", Outcome: "complete",
		At: time.Now(), Upstream: "azure", Attempts: 3}
	old := fmt.Sprintf(`{"id":%q,"rq":"req-old","u":%q,"m":"gpt-4o-mini","ep":"chat.completions","in":10,"out":5,"c":7,"src":"upstream","oc":"complete","at":%d}`,
		testenv.UUID(), user, time.Now().UnixMilli())
	for _, v := range []string{ledger.Encode(failedOver), old} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []string{ledger.Field, v}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db})
	testenv.WaitFor(t, "both events", 5*time.Second, func() bool { return count(t, db, user) == 2 })
	var got string
	if err := db.Pool().QueryRow(ctx, `SELECT string_agg(request_id || ':' || upstream || ':' || attempts, ',' ORDER BY request_id)
		FROM usage_events WHERE clerk_user_id = $1`, user).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "req-new:azure:3,req-old::0"; got != want {
		t.Errorf("request:upstream:attempts rows %q, want %q", got, want)
	}
}

// TestDeadConsumersEventsAreClaimed: events another consumer read and never
// acknowledged (its instance died) are taken over and recorded.
func TestDeadConsumersEventsAreClaimed(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	settle(t, rdb, stream, user, 30)
	ctx := context.Background()
	if err := rdb.XGroupCreateMkStream(ctx, stream, ledger.Group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	// "dead" reads everything, then dies without acknowledging.
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: ledger.Group, Consumer: "dead", Streams: []string{stream, ">"}, Count: 100, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db, ClaimIdle: 300 * time.Millisecond})
	testenv.WaitFor(t, "the dead consumer's events", 10*time.Second, func() bool { return count(t, db, user) == 30 })
}

// TestPostgresDownThenBack: while Postgres is unreachable the events wait
// in the stream (and the errors are counted); when it returns they all
// land, once.
func TestPostgresDownThenBack(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	d := testenv.NewDatabase(t)
	proxy, viaProxy := testenv.ProxyURL(t, d.PoolerURL)
	db := openDB(t, viaProxy)
	check := openDB(t, d.URL)
	m := metrics.New()
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db, Metrics: m})
	proxy.Cut()
	settle(t, rdb, stream, user, 50)
	testenv.WaitFor(t, "two failed drain attempts", 10*time.Second, func() bool {
		for line := range strings.Lines(scrape(t, m)) {
			if n, ok := strings.CutPrefix(strings.TrimSpace(line), "sas_usage_drain_errors_total "); ok {
				v, _ := strconv.ParseFloat(n, 64)
				return v >= 2
			}
		}
		return false
	})
	if n := rdb.XLen(context.Background(), stream).Val(); n != 50 {
		t.Errorf("stream holds %d events during the outage, want 50", n)
	}
	// The backlog gauge counts them while no write succeeds (it once
	// moved only after a successful write, so it stayed at 0 all along).
	testenv.WaitFor(t, "a backlog gauge of 50", 10*time.Second, func() bool {
		return strings.Contains(scrape(t, m), "\nsas_usage_stream_backlog 50\n")
	})
	proxy.Restore()
	testenv.WaitFor(t, "the events after the outage", 15*time.Second, func() bool { return count(t, check, user) == 50 })
	if got := total(t, check, user); got.Requests != 50 {
		t.Errorf("daily sums after the outage: %+v", got)
	}
}

// TestStopFlushes: events settled just before the drainer stops are
// recorded by its last flush.
func TestStopFlushes(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	stop := start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db})
	settle(t, rdb, stream, user, 700)
	stop()
	if n := count(t, db, user); n != 700 {
		t.Errorf("after the stop: %d events recorded, want 700", n)
	}
}

// TestMalformedEntryIsDropped: an entry that is not an event cannot block
// the ones after it.
func TestMalformedEntryIsDropped(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{"junk", "1"}}).Err(); err != nil {
		t.Fatal(err)
	}
	settle(t, rdb, stream, user, 3)
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db})
	testenv.WaitFor(t, "the good events", 5*time.Second, func() bool { return count(t, db, user) == 3 })
	testenv.WaitFor(t, "an empty stream", 5*time.Second, func() bool { return rdb.XLen(context.Background(), stream).Val() == 0 })
}

// TestRetention: PruneUsage deletes events and daily sums older than the
// cutoff, in batches, and the webhook delivery ids received before it;
// nothing newer.
func TestRetention(t *testing.T) {
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	ctx := context.Background()
	user := "user_" + random()
	now := time.Now().UTC()
	var events []gateway.UsageEvent
	for i := range 25 {
		events = append(events, gateway.UsageEvent{ID: testenv.UUID(), ClerkUserID: user, Model: "m", Endpoint: "chat.completions",
			InputTokens: 1, Source: "upstream", Outcome: "complete", At: now.AddDate(0, 0, -i*20)})
	}
	if n, err := db.RecordUsage(ctx, events); err != nil || n != 25 {
		t.Fatalf("RecordUsage = %d, %v", n, err)
	}
	deleted, err := db.PruneUsage(ctx, now.AddDate(0, 0, -400), 3)
	if err != nil || deleted != 4 { // 420, 440, 460, 480 days old
		t.Fatalf("PruneUsage = %d, %v; want 4", deleted, err)
	}
	if n := count(t, db, user); n != 21 {
		t.Errorf("%d events left, want 21", n)
	}
	var daily int
	_ = db.Pool().QueryRow(ctx, "SELECT count(*) FROM usage_daily WHERE clerk_user_id = $1", user).Scan(&daily)
	if daily != 21 {
		t.Errorf("%d daily rows left, want 21", daily)
	}
	for _, q := range []string{
		`INSERT INTO stripe_events (id, type, created, received_at) VALUES ('evt_old', 't', now(), now() - interval '420 days'), ('evt_new', 't', now(), now() - interval '3 days')`,
		`INSERT INTO clerk_events (svix_id, type, received_at) VALUES ('msg_old', 't', now() - interval '420 days'), ('msg_new', 't', now() - interval '3 days')`,
	} {
		if _, err := db.Pool().Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PruneUsage(ctx, now.AddDate(0, 0, -400), 3); err != nil {
		t.Fatal(err)
	}
	var left string
	_ = db.Pool().QueryRow(ctx, `SELECT string_agg(id, ',' ORDER BY id) FROM (SELECT id FROM stripe_events UNION ALL SELECT svix_id FROM clerk_events) ids`).Scan(&left)
	if left != "evt_new,msg_new" {
		t.Errorf("webhook ids left: %s; want evt_new,msg_new", left)
	}
}

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestDrainOverTLS: the ledger works against a TLS-only Redis with no
// server-side configuration (as Upstash is), its waiting reads on their own
// connection included.
func TestDrainOverTLS(t *testing.T) {
	url, pool := testenv.TLSRedis(t)
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opts.TLSConfig.RootCAs = pool
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	stream, user := "sas:usage", "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db})
	// The events arrive while the drainer is blocked in a read.
	testenv.WaitFor(t, "the drainer waiting in a read", 5*time.Second, func() bool {
		return strings.Contains(rdb.ClientList(context.Background()).Val(), "cmd=xreadgroup")
	})
	settle(t, rdb, stream, user, 10)
	testenv.WaitFor(t, "the events over TLS", 5*time.Second, func() bool { return count(t, db, user) == 10 })
}

// TestDrainOnMiniredis: `sas-gateway dev` without REDIS_URL runs on an
// in-process Redis (miniredis) and in-memory users; the settlement script
// and the drain work there too, so the dev stack shows usage.
func TestDrainOnMiniredis(t *testing.T) {
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	store, user := memstore.New(nil), "user_"+random()
	start(t, ledger.Options{Redis: rdb, Store: store})
	settle(t, rdb, ledger.DefaultStream, user, 5)
	testenv.WaitFor(t, "the events in memory", 5*time.Second, func() bool {
		days, _ := store.Usage(context.Background(), user, time.Now().AddDate(0, 0, -1), time.Now())
		return len(days) == 1 && days[0].Models[0].Requests == 5
	})
}

// TestPoisonEventIsDropped: an event Postgres refuses for itself (here an
// id that is not a UUID) is dropped, and the rest of its batch is recorded.
func TestPoisonEventIsDropped(t *testing.T) {
	rdb, stream, user := newRedis(t), "sas:usage:test:"+random(), "user_"+random()
	db := openDB(t, testenv.NewDatabase(t).PoolerURL)
	bad := gateway.UsageEvent{ID: "not-a-uuid", ClerkUserID: user, Model: "m", Endpoint: "chat.completions", Source: "upstream", Outcome: "complete", At: time.Now()}
	if err := rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: []string{ledger.Field, ledger.Encode(bad)}}).Err(); err != nil {
		t.Fatal(err)
	}
	settle(t, rdb, stream, user, 4)
	start(t, ledger.Options{Redis: rdb, Stream: stream, Store: db})
	testenv.WaitFor(t, "the good events", 5*time.Second, func() bool { return count(t, db, user) == 4 })
	testenv.WaitFor(t, "an empty stream", 5*time.Second, func() bool { return rdb.XLen(context.Background(), stream).Val() == 0 })
}
