// Package ledger keeps every metered request's usage event, exactly once:
// settlement appends the event to a Redis stream in the same Lua script
// that charges it (quota.Limiter.Settle), and a Drainer on every gateway
// instance moves the stream into Postgres in batches through a consumer
// group. An event is acknowledged and deleted from the stream only after
// the transaction that inserted it committed, inserts are idempotent on the
// event id, and a dead instance's unacknowledged events are claimed by
// another: a killed instance loses nothing, and Postgres being down only
// makes the stream longer.
package ledger

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/signals-sorcery/sas/gateway"
)

// DefaultStream is the Redis key of the usage stream.
const DefaultStream = "sas:usage"

// MaxLen bounds the stream (approximately, as XADD MAXLEN ~ does): about
// 300 bytes an entry, so at most ~75 MB of Redis. Drained entries are
// deleted, so the stream only grows while Postgres is unreachable: at 100
// requests a second the bound is 40 minutes of outage, after which the
// oldest undrained events are dropped (the charges in Redis stay right).
// sas_usage_stream_backlog says how close it is.
const MaxLen = 250_000

// Fields encodes e as the field/value pairs of a stream entry.
func Fields(e gateway.UsageEvent) []string {
	stream := "0"
	if e.Stream {
		stream = "1"
	}
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	return []string{
		"id", e.ID, "request_id", e.RequestID, "user", e.ClerkUserID, "model", e.Model, "endpoint", e.Endpoint,
		"input", i(e.InputTokens), "cached", i(e.CachedInputTokens), "output", i(e.OutputTokens), "cost", i(e.CostMicros),
		"source", e.Source, "outcome", e.Outcome, "stream", stream, "at", i(e.At.UnixMilli()),
	}
}

// decode reads a stream entry written by Fields.
func decode(v map[string]any) (gateway.UsageEvent, error) {
	s := func(k string) string { x, _ := v[k].(string); return x }
	var errs []error
	n := func(k string) int64 {
		x, err := strconv.ParseInt(s(k), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
		return x
	}
	e := gateway.UsageEvent{
		ID: s("id"), RequestID: s("request_id"), ClerkUserID: s("user"), Model: s("model"), Endpoint: s("endpoint"),
		InputTokens: n("input"), CachedInputTokens: n("cached"), OutputTokens: n("output"), CostMicros: n("cost"),
		Source: s("source"), Outcome: s("outcome"), Stream: s("stream") == "1", At: time.UnixMilli(n("at")).UTC(),
	}
	if e.ID == "" || e.ClerkUserID == "" {
		errs = append(errs, errors.New("no event id or user"))
	}
	return e, errors.Join(errs...)
}
