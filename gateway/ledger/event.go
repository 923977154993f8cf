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
	"encoding/json"
	"errors"
	"fmt"
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

// entry is a usage event as a stream entry holds it: one JSON value under
// one field, so that the settlement script passes one argument and the
// drain parses one value per event.
type entry struct {
	ID        string `json:"id"`
	RequestID string `json:"rq,omitempty"`
	User      string `json:"u"`
	Model     string `json:"m"`
	Endpoint  string `json:"ep"`
	Input     int64  `json:"in"`
	Cached    int64  `json:"ci,omitempty"`
	Output    int64  `json:"out"`
	Cost      int64  `json:"c"`
	Source    string `json:"src"`
	Outcome   string `json:"oc"`
	Stream    bool   `json:"s,omitempty"`
	At        int64  `json:"at"` // Unix ms
	// Entries written before upstreams were recorded have neither: they
	// decode as "" and 0, the event's "not known".
	Upstream string `json:"up,omitempty"`
	Attempts int    `json:"try,omitempty"`
	// The prompt template run, if any.
	Template        string `json:"tpl,omitempty"`
	TemplateVersion int    `json:"tv,omitempty"`
}

// Field is the name of the entry's one field.
const Field = "e"

// Encode encodes e as the value of a stream entry's Field.
func Encode(e gateway.UsageEvent) string {
	b, _ := json.Marshal(entry{e.ID, e.RequestID, e.ClerkUserID, e.Model, e.Endpoint, e.InputTokens, e.CachedInputTokens,
		e.OutputTokens, e.CostMicros, e.Source, e.Outcome, e.Stream, e.At.UnixMilli(), e.Upstream, e.Attempts, e.Template, e.TemplateVersion})
	return string(b)
}

// decode reads a stream entry written with Encode.
func decode(v map[string]any) (gateway.UsageEvent, error) {
	s, _ := v[Field].(string)
	var x entry
	if err := json.Unmarshal([]byte(s), &x); err != nil {
		return gateway.UsageEvent{}, fmt.Errorf("not a usage event: %w", err)
	}
	if x.ID == "" || x.User == "" {
		return gateway.UsageEvent{}, errors.New("no event id or user")
	}
	return gateway.UsageEvent{ID: x.ID, RequestID: x.RequestID, ClerkUserID: x.User, Model: x.Model, Endpoint: x.Endpoint,
		InputTokens: x.Input, CachedInputTokens: x.Cached, OutputTokens: x.Output, CostMicros: x.Cost, Source: x.Source,
		Outcome: x.Outcome, Stream: x.Stream, At: time.UnixMilli(x.At).UTC(), Upstream: x.Upstream, Attempts: x.Attempts,
		Template: x.Template, TemplateVersion: x.TemplateVersion}, nil
}
