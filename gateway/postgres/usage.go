package postgres

import (
	"context"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signals-sorcery/sas/gateway"
)

// recordUsageSQL inserts a batch of events (one array per column) and adds
// the ones that were new to the daily sums, in one statement: an event that
// is already there (a batch drained twice) changes nothing, so the sums stay
// exact. The daily rows are upserted in key order, so two batches that
// touch the same rows lock them in the same order (no deadlock).
const recordUsageSQL = `
WITH ins AS (
    INSERT INTO usage_events (event_id, request_id, clerk_user_id, model, endpoint, input_tokens,
        cached_input_tokens, output_tokens, cost_micros, source, outcome, stream, at, upstream, attempts,
        template, template_version)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
        $7::int8[], $8::int8[], $9::int8[], $10::text[], $11::text[], $12::bool[], $13::timestamptz[],
        $14::text[], $15::int4[], $16::text[], $17::int4[])
    ON CONFLICT (event_id) DO NOTHING
    RETURNING clerk_user_id, (at AT TIME ZONE 'UTC')::date AS day, model, input_tokens,
        cached_input_tokens, output_tokens, cost_micros
), daily AS (
    INSERT INTO usage_daily AS d (clerk_user_id, day, model, requests, input_tokens,
        cached_input_tokens, output_tokens, cost_micros)
    SELECT clerk_user_id, day, model, count(*), sum(input_tokens), sum(cached_input_tokens),
        sum(output_tokens), sum(cost_micros)
    FROM ins GROUP BY clerk_user_id, day, model ORDER BY clerk_user_id, day, model
    ON CONFLICT (clerk_user_id, day, model) DO UPDATE SET
        requests = d.requests + EXCLUDED.requests,
        input_tokens = d.input_tokens + EXCLUDED.input_tokens,
        cached_input_tokens = d.cached_input_tokens + EXCLUDED.cached_input_tokens,
        output_tokens = d.output_tokens + EXCLUDED.output_tokens,
        cost_micros = d.cost_micros + EXCLUDED.cost_micros
)
SELECT count(*) FROM ins`

// RecordUsage stores events, each once whatever the number of calls, and
// returns how many were new. One round trip, one transaction.
//
// Errors: unavailable.
func (db *DB) RecordUsage(ctx context.Context, events []gateway.UsageEvent) (int, error) {
	if len(events) == 0 {
		return 0, nil
	}
	n := len(events)
	var (
		ids, requests, users, models, endpoints, sources, outcomes = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		input, cached, output, cost                                = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		streams                                                    = make([]bool, n)
		at                                                         = make([]time.Time, n)
		upstreams                                                  = make([]string, n)
		attempts                                                   = make([]int32, n)
		tpls                                                       = make([]string, n)
		tplVersions                                                = make([]int32, n)
	)
	for i, e := range events {
		ids[i], requests[i], users[i], models[i], endpoints[i] = e.ID, e.RequestID, e.ClerkUserID, e.Model, e.Endpoint
		input[i], cached[i], output[i], cost[i] = e.InputTokens, e.CachedInputTokens, e.OutputTokens, e.CostMicros
		sources[i], outcomes[i], streams[i], at[i] = e.Source, e.Outcome, e.Stream, e.At
		// Clamped: a nonsensical count must not make Postgres refuse the
		// event, and with it the record of what it cost.
		upstreams[i], attempts[i] = e.Upstream, int32(min(max(e.Attempts, 0), math.MaxInt32))
		tpls[i], tplVersions[i] = e.Template, int32(min(max(e.TemplateVersion, 0), math.MaxInt32))
	}
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var inserted int
	err := db.pool.QueryRow(ctx, recordUsageSQL, ids, requests, users, models, endpoints, input, cached, output, cost,
		sources, outcomes, streams, at, upstreams, attempts, tpls, tplVersions).Scan(&inserted)
	return inserted, classify(err)
}

// Usage returns a user's usage per UTC day and model from day from to day
// to, inclusive; days without usage are left out.
//
// Errors: unavailable.
func (db *DB) Usage(ctx context.Context, clerkUserID string, from, to time.Time) ([]gateway.DayUsage, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	rows, err := db.pool.Query(ctx, `
SELECT day, model, requests, input_tokens, cached_input_tokens, output_tokens, cost_micros
FROM usage_daily WHERE clerk_user_id = $1 AND day BETWEEN $2::date AND $3::date
ORDER BY day, model`, clerkUserID, from.Format(time.DateOnly), to.Format(time.DateOnly))
	if err != nil {
		return nil, classify(err)
	}
	// Deferred, so that even a panic gives the connection back to the pool
	// (whose Close would otherwise wait for it forever).
	defer rows.Close()
	var days []gateway.DayUsage
	for rows.Next() {
		var day time.Time
		var m gateway.ModelUsage
		if err := rows.Scan(&day, &m.Model, &m.Requests, &m.InputTokens, &m.CachedInputTokens, &m.OutputTokens, &m.CostMicros); err != nil {
			return nil, classify(err)
		}
		if len(days) == 0 || !days[len(days)-1].Date.Equal(day) {
			days = append(days, gateway.DayUsage{Date: day})
		}
		days[len(days)-1].Models = append(days[len(days)-1].Models, m)
	}
	return days, classify(rows.Err())
}

// UserUsage is one user's usage summed over a range of days.
type UserUsage struct {
	ClerkUserID string `json:"user"`
	gateway.UsageFigures
}

// UsageByUser sums usage per user from day from to day to, inclusive
// (one user only when clerkUserID is set), most expensive first.
//
// Errors: unavailable.
func (db *DB) UsageByUser(ctx context.Context, from, to time.Time, clerkUserID string) ([]UserUsage, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // an operator's report, not a request
	defer cancel()
	rows, err := db.pool.Query(ctx, `
SELECT clerk_user_id, sum(requests)::int8, sum(input_tokens)::int8, sum(cached_input_tokens)::int8,
    sum(output_tokens)::int8, sum(cost_micros)::int8
FROM usage_daily
WHERE day BETWEEN $1::date AND $2::date AND ($3 = '' OR clerk_user_id = $3)
GROUP BY clerk_user_id ORDER BY 6 DESC, 1`, from.Format(time.DateOnly), to.Format(time.DateOnly), clerkUserID)
	if err != nil {
		return nil, classify(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (UserUsage, error) {
		var u UserUsage
		err := r.Scan(&u.ClerkUserID, &u.Requests, &u.InputTokens, &u.CachedInputTokens, &u.OutputTokens, &u.CostMicros)
		return u, err
	})
	return out, classify(err)
}

// PruneUsage deletes the events and daily sums older than before, at most
// batch events per statement so that no statement holds locks for long,
// and the webhook delivery ids received before it; it returns how many
// events it deleted.
//
// Errors: unavailable.
func (db *DB) PruneUsage(ctx context.Context, before time.Time, batch int) (int64, error) {
	var total int64
	for {
		qctx, cancel := db.bound(ctx)
		tag, err := db.pool.Exec(qctx, `
DELETE FROM usage_events WHERE event_id IN (SELECT event_id FROM usage_events WHERE at < $1 LIMIT $2)`, before, batch)
		cancel()
		if err != nil {
			return total, classify(err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(batch) {
			break
		}
	}
	// The daily sums, and the webhook delivery ids kept to drop duplicates
	// (no provider redelivers, and no signature verifies, that late).
	for _, q := range []string{
		`DELETE FROM usage_daily WHERE day < ($1 AT TIME ZONE 'UTC')::date`,
		`DELETE FROM stripe_events WHERE received_at < $1`,
		`DELETE FROM clerk_events WHERE received_at < $1`,
	} {
		qctx, cancel := db.bound(ctx)
		_, err := db.pool.Exec(qctx, q, before)
		cancel()
		if err != nil {
			return total, classify(err)
		}
	}
	return total, nil
}
