package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/postgres"
)

// yearOfUsage records n events for user spread over the last 365 days, on
// two models, in batches as the ledger writes them.
func yearOfUsage(t testing.TB, db *postgres.DB, user string, n int) {
	t.Helper()
	now := time.Now().UTC()
	batch := make([]gateway.UsageEvent, 0, 5000)
	for i := range n {
		batch = append(batch, gateway.UsageEvent{ID: testenv.UUID(), RequestID: "r", ClerkUserID: user,
			Model: []string{"gpt-4o-mini", "gpt-4o"}[i%2], Endpoint: "chat.completions", InputTokens: 100, CachedInputTokens: 10,
			OutputTokens: 50, CostMicros: 45, Source: "upstream", Outcome: "complete", At: now.Add(-time.Duration(i%365) * 24 * time.Hour)})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := db.RecordUsage(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// TestUsageOfABusyYear: a user with 100,000 events over a year gets the
// year's report from the daily sums (at most one row per day and model),
// and the sums are exact.
func TestUsageOfABusyYear(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		yearOfUsage(t, db, "user_busy", 100_000)
		yearOfUsage(t, db, "user_other", 2_000)
		from, to := time.Now().UTC().AddDate(0, 0, -365), time.Now().UTC()
		days, err := db.Usage(ctx, "user_busy", from, to)
		if err != nil {
			t.Fatal(err)
		}
		var total gateway.UsageFigures
		rows := 0
		for _, d := range days {
			for _, m := range d.Models {
				total.Add(m.UsageFigures)
				rows++
			}
		}
		if len(days) != 365 || rows != 730 || total != (gateway.UsageFigures{Requests: 100_000, InputTokens: 10_000_000, CachedInputTokens: 1_000_000, OutputTokens: 5_000_000, CostMicros: 4_500_000}) {
			t.Errorf("%d days, %d rows, total %+v", len(days), rows, total)
		}
		var plan strings.Builder
		r, err := db.Pool().Query(ctx, `EXPLAIN SELECT day, model, requests, input_tokens, cached_input_tokens, output_tokens, cost_micros
			FROM usage_daily WHERE clerk_user_id = $1 AND day BETWEEN $2::date AND $3::date ORDER BY day, model`,
			"user_busy", from.Format(time.DateOnly), to.Format(time.DateOnly))
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var line string
			_ = r.Scan(&line)
			plan.WriteString(line + "\n")
		}
		// The daily sums only (the planner picks their primary key or, for a
		// table this small, a scan of it): never the 100,000 events.
		if !strings.Contains(plan.String(), "usage_daily") || strings.Contains(plan.String(), "usage_events") {
			t.Errorf("the report does not read the daily sums:\n%s", plan.String())
		}
		users, err := db.UsageByUser(ctx, from, to, "")
		if err != nil || len(users) != 2 || users[0].ClerkUserID != "user_busy" || users[0].Requests != 100_000 || users[1].Requests != 2_000 {
			t.Errorf("UsageByUser = %+v, %v", users, err)
		}
	})
}

// BenchmarkUsageYear is GET /v1/usage's query for a user with 100,000
// events over a year, through PgBouncer.
func BenchmarkUsageYear(b *testing.B) {
	db, err := postgres.Open(context.Background(), testenv.NewDatabase(b).PoolerURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	yearOfUsage(b, db, "user_busy", 100_000)
	from, to := time.Now().UTC().AddDate(0, 0, -365), time.Now().UTC()
	for b.Loop() {
		if _, err := db.Usage(context.Background(), "user_busy", from, to); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordUsage is the ledger's insert, per event, in batches of
// 500 (the drain's batch) from 1,000 users, through PgBouncer.
func BenchmarkRecordUsage(b *testing.B) {
	db, err := postgres.Open(context.Background(), testenv.NewDatabase(b).PoolerURL)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	batch := make([]gateway.UsageEvent, 500)
	n := 0
	for b.Loop() {
		for i := range batch {
			n++
			batch[i] = gateway.UsageEvent{ID: testenv.UUID(), RequestID: "r", ClerkUserID: fmt.Sprint("user_", n%1000), Model: "gpt-4o-mini",
				Endpoint: "chat.completions", InputTokens: 100, OutputTokens: 50, CostMicros: 45, Source: "upstream", Outcome: "complete", At: time.Now()}
		}
		if _, err := db.RecordUsage(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/event")
}

// TestRecordUsageOnce: the ledger may hand the same events over again (a
// batch drained twice, an event claimed by a second instance); each is
// stored and summed once, without an error, whether the batch is all
// repeats or mixes repeats with new events.
func TestRecordUsageOnce(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		day1 := time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
		day2 := day1.AddDate(0, 0, 1)
		event := func(model string, day time.Time) gateway.UsageEvent {
			return gateway.UsageEvent{ID: testenv.UUID(), RequestID: "r", ClerkUserID: "user_twice", Model: model, Endpoint: "chat.completions",
				InputTokens: 100, CachedInputTokens: 10, OutputTokens: 50, CostMicros: 45, Source: "upstream", Outcome: "complete", At: day.Add(10 * time.Hour)}
		}
		// sums is a model's figures of n events.
		sums := func(model string, n int64) gateway.ModelUsage {
			return gateway.ModelUsage{Model: model, UsageFigures: gateway.UsageFigures{Requests: n, InputTokens: 100 * n, CachedInputTokens: 10 * n, OutputTokens: 50 * n, CostMicros: 45 * n}}
		}
		first := []gateway.UsageEvent{event("gpt-4o-mini", day1), event("gpt-4o", day1), event("gpt-4o-mini", day2)}
		// mixed repeats one event of first and adds two.
		mixed := []gateway.UsageEvent{first[1], event("gpt-4o-mini", day1), event("gpt-4o", day2)}
		afterFirst := []gateway.DayUsage{
			{Date: day1, Models: []gateway.ModelUsage{sums("gpt-4o", 1), sums("gpt-4o-mini", 1)}},
			{Date: day2, Models: []gateway.ModelUsage{sums("gpt-4o-mini", 1)}},
		}
		afterMixed := []gateway.DayUsage{
			{Date: day1, Models: []gateway.ModelUsage{sums("gpt-4o", 1), sums("gpt-4o-mini", 2)}},
			{Date: day2, Models: []gateway.ModelUsage{sums("gpt-4o", 1), sums("gpt-4o-mini", 1)}},
		}
		for _, step := range []struct {
			name    string
			batch   []gateway.UsageEvent
			wantNew int
			want    []gateway.DayUsage
			events  int
		}{
			{"first", first, 3, afterFirst, 3},
			{"the same batch again", first, 0, afterFirst, 3},
			{"repeats and new events", mixed, 2, afterMixed, 5},
			{"that batch again", mixed, 0, afterMixed, 5},
		} {
			n, err := db.RecordUsage(ctx, step.batch)
			if err != nil || n != step.wantNew {
				t.Fatalf("%s: RecordUsage = %d, %v; want %d new", step.name, n, err, step.wantNew)
			}
			got, err := db.Usage(ctx, "user_twice", day1, day2)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(step.want, got); diff != "" {
				t.Errorf("%s: daily sums (-want +got):\n%s", step.name, diff)
			}
			var events int
			if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM usage_events WHERE clerk_user_id = 'user_twice'`).Scan(&events); err != nil {
				t.Fatal(err)
			}
			if events != step.events {
				t.Errorf("%s: %d events stored, want %d", step.name, events, step.events)
			}
		}
	})
}

// TestRecordUsageUpstream: RecordUsage stores each event's upstream and
// attempt count in its row; an event that names none stores "" and 0, as
// do the rows written before the columns existed (an insert that leaves
// them out).
func TestRecordUsageUpstream(t *testing.T) {
	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		event := func(request, upstream string, attempts int) gateway.UsageEvent {
			return gateway.UsageEvent{ID: testenv.UUID(), RequestID: request, ClerkUserID: "user_upstream", Model: "gpt-4o-mini",
				Endpoint: "chat.completions", InputTokens: 100, OutputTokens: 50, CostMicros: 45, Source: "upstream", Outcome: "complete",
				At: time.Now(), Upstream: upstream, Attempts: attempts}
		}
		batch := []gateway.UsageEvent{event("r1", "openai", 1), event("r2", "azure", 3), event("r3", "", 0)}
		if n, err := db.RecordUsage(ctx, batch); err != nil || n != 3 {
			t.Fatalf("RecordUsage = %d, %v; want 3 new", n, err)
		}
		if _, err := db.Pool().Exec(ctx, `INSERT INTO usage_events (event_id, request_id, clerk_user_id, model, endpoint,
			input_tokens, cached_input_tokens, output_tokens, cost_micros, source, outcome, stream, at)
			VALUES (gen_random_uuid(), 'r4', 'user_upstream', 'gpt-4o-mini', 'chat.completions', 1, 0, 1, 1, 'upstream', 'complete', false, now())`); err != nil {
			t.Fatal(err)
		}
		type row struct {
			Request, Upstream string
			Attempts          int
		}
		rows, err := db.Pool().Query(ctx, `SELECT request_id, upstream, attempts FROM usage_events
			WHERE clerk_user_id = 'user_upstream' ORDER BY request_id`)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
		if err != nil {
			t.Fatal(err)
		}
		want := []row{{"r1", "openai", 1}, {"r2", "azure", 3}, {"r3", "", 0}, {"r4", "", 0}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("usage_events rows (-want +got):\n%s", diff)
		}
	})
}
