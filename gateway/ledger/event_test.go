package ledger

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway"
)

// TestEventRoundTrip: every field of an event survives the stream entry,
// and an entry written by a build from before upstreams were recorded
// still decodes, with the upstream and attempts not known.
func TestEventRoundTrip(t *testing.T) {
	at := time.Date(2027, 3, 1, 10, 0, 0, 123e6, time.UTC)
	for _, tc := range []struct {
		name  string
		entry string // "": Encode(want)
		want  gateway.UsageEvent
	}{
		{"every field", "", gateway.UsageEvent{ID: "0b6f0c1e-5d0e-4c8e-9a57-8f3f0a3d2c11", RequestID: "req-1", ClerkUserID: "user_1",
			Model: "gpt-4o-mini", Endpoint: "responses", InputTokens: 100, CachedInputTokens: 10, OutputTokens: 50, CostMicros: 45,
			Source: "upstream", Outcome: "complete", Stream: true, At: at, Upstream: "openai2", Attempts: 2}},
		{"no upstream tried", "", gateway.UsageEvent{ID: "0b6f0c1e-5d0e-4c8e-9a57-8f3f0a3d2c12", ClerkUserID: "user_1", Model: "m",
			Endpoint: "chat.completions", Source: "reservation", Outcome: "client_gone", At: at}},
		{"an older build's entry",
			`{"id":"0b6f0c1e-5d0e-4c8e-9a57-8f3f0a3d2c13","rq":"req-3","u":"user_1","m":"gpt-4o","ep":"chat.completions","in":7,"out":3,"c":9,"src":"upstream","oc":"complete","at":1803895200123}`,
			gateway.UsageEvent{ID: "0b6f0c1e-5d0e-4c8e-9a57-8f3f0a3d2c13", RequestID: "req-3", ClerkUserID: "user_1", Model: "gpt-4o",
				Endpoint: "chat.completions", InputTokens: 7, OutputTokens: 3, CostMicros: 9, Source: "upstream", Outcome: "complete", At: at}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry := tc.entry
			if entry == "" {
				entry = Encode(tc.want)
			}
			got, err := decode(map[string]any{Field: entry})
			if err != nil {
				t.Fatalf("decode %s: %v", entry, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("decode %s (-want +got):\n%s", entry, diff)
			}
		})
	}
}
