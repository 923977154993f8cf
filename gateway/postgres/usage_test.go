package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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
