package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/exitcode"
)

// usageRow is a user's totals as `sas-gateway usage --json` prints them
// (the fields of GET /v1/usage's "total").
type usageRow struct {
	User              string       `json:"user,omitempty"`
	Requests          int64        `json:"requests"`
	InputTokens       int64        `json:"input_tokens"`
	CachedInputTokens int64        `json:"cached_input_tokens"`
	OutputTokens      int64        `json:"output_tokens"`
	USD               quota.Micros `json:"usd"`
}

func row(user string, f gateway.UsageFigures) usageRow {
	return usageRow{user, f.Requests, f.InputTokens, f.CachedInputTokens, f.OutputTokens, quota.Micros(f.CostMicros)}
}

// usage prints per-user totals from the ledger, most expensive first, or
// prunes it (`usage prune`).
func (e env) usage(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "prune" {
		return e.prune(ctx, args[1:])
	}
	fs := flag.NewFlagSet("sas-gateway usage", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage) }
	today := time.Now().UTC().Truncate(24 * time.Hour)
	since := fs.String("since", today.AddDate(0, 0, -29).Format(time.DateOnly), "first UTC day, YYYY-MM-DD")
	until := fs.String("until", today.Format(time.DateOnly), "last UTC day, YYYY-MM-DD")
	user := fs.String("user", "", "one user's totals (Clerk user id)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return exitcode.FlagError(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "sas-gateway usage: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return exitcode.ErrUsage
	}
	from, err1 := time.Parse(time.DateOnly, *since)
	to, err2 := time.Parse(time.DateOnly, *until)
	if err1 != nil || err2 != nil || to.Before(from) {
		fmt.Fprintf(e.stderr, "sas-gateway usage: --since and --until must be dates as YYYY-MM-DD, --since not after --until\n")
		return exitcode.ErrUsage
	}
	db, err := e.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	users, err := db.UsageByUser(ctx, from, to, *user)
	if err != nil {
		return err
	}
	var total gateway.UsageFigures
	rows := make([]usageRow, 0, len(users))
	for _, u := range users {
		total.Add(u.UsageFigures)
		rows = append(rows, row(u.ClerkUserID, u.UsageFigures))
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Since string     `json:"since"`
			Until string     `json:"until"`
			Users []usageRow `json:"users"`
			Total usageRow   `json:"total"`
		}{from.Format(time.DateOnly), to.Format(time.DateOnly), rows, row("", total)})
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "user\trequests\tinput tokens\tcached\toutput tokens\tUSD\t\n")
	for _, r := range append(rows, row("total", total)) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t\n", r.User, r.Requests, r.InputTokens, r.CachedInputTokens, r.OutputTokens, r.USD)
	}
	fmt.Fprintf(e.stderr, "usage from %s to %s (UTC days, inclusive), most expensive first\n", from.Format(time.DateOnly), to.Format(time.DateOnly))
	return tw.Flush()
}

// prune deletes the ledger's events older than the retention now, as the
// gateway's hourly job does.
func (e env) prune(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sas-gateway usage prune", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage) }
	days := fs.Int("older-than-days", config.DefaultUsageRetentionDays, "delete events older than this many days")
	if err := fs.Parse(args); err != nil {
		return exitcode.FlagError(err)
	}
	if fs.NArg() > 0 || *days < 1 {
		fmt.Fprintf(e.stderr, "sas-gateway usage prune: want --older-than-days N (N ≥ 1) and nothing else\n\n%s", usage)
		return exitcode.ErrUsage
	}
	db, err := e.openDB(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	before := time.Now().Add(-time.Duration(*days) * 24 * time.Hour)
	n, err := db.PruneUsage(ctx, before, 5000)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "deleted %d usage events from before %s\n", n, before.UTC().Format(time.RFC3339))
	return nil
}
