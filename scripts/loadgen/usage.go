package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/postgres"
)

// usageBench gives one user a year of daily use (100,000 events) and
// measures GET /v1/usage over that year beside GET /v1/me, in the same
// rounds: the report's cost is its query on the daily sums.
func usageBench(ctx context.Context, o options, cfg config.Config, log *slog.Logger, client *http.Client, tokens []string, budget *atomic.Int64) error {
	db, err := postgres.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	const user, events = "user_bench_00000", 100_000
	now := time.Now().UTC()
	batch := make([]gateway.UsageEvent, 0, 5000)
	for i := range events {
		batch = append(batch, gateway.UsageEvent{ID: fmt.Sprintf("0000be7c-0000-4000-8000-%012x", i), RequestID: "r", ClerkUserID: user,
			Model: []string{"gpt-4o-mini", "gpt-4o"}[i%2], Endpoint: "chat.completions", InputTokens: 100, OutputTokens: 50,
			CostMicros: 45, Source: "upstream", Outcome: "complete", At: now.Add(-time.Duration(i%365) * 24 * time.Hour)})
		if len(batch) == cap(batch) {
			if _, err := db.RecordUsage(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	gw, err := app.New(ctx, cfg, log, app.Deps{})
	if err != nil {
		return err
	}
	defer gw.Close()
	base := serve(gw.Handler)
	one := []string{tokens[0]} // the user with the year of use
	year := fmt.Sprintf("/v1/usage?from=%s&to=%s", now.AddDate(0, 0, -365).Format(time.DateOnly), now.Format(time.DateOnly))
	targets := []target{
		{name: "GET /v1/me, same user (baseline)", url: base + "/v1/me"},
		{name: "GET /v1/usage over a year, 100,000 events (730 daily rows)", url: base + year},
	}
	conc := o
	conc.concurrency = 8
	results := measureAll(targets, client, one, conc, budget)
	fmt.Printf("\nGET /v1/usage for a user with a year of daily use, concurrency %d:\n\n", conc.concurrency)
	printTable(targets, results)
	return nil
}
