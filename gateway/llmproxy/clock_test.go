package llmproxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

// TestProxyUsesTheLimitersClock (issue 24, item 4): the proxy reads the
// wall clock the limiter counts with — the usage event's time is that
// clock's, and RateLimit-Reset counts to the end of that clock's minute —
// not the process's (a test once flaked at a minute boundary for it). The
// injected clock stands half a second before the end of a minute, near the
// real time so the token's own times still check.
func TestProxyUsesTheLimitersClock(t *testing.T) {
	at := time.Now().Truncate(time.Minute).Add(time.Minute - 500*time.Millisecond)
	clk := testenv.NewClock(at)
	e := newEnv(t, nil, app.Deps{Now: clk.Now})
	r := e.post("/v1/chat/completions", hello)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if got := r.header.Get("RateLimit-Reset"); got != "1" {
		t.Errorf("RateLimit-Reset %q, want 1 (the injected clock's minute ends in 0.5 s)", got)
	}
	testenv.WaitFor(t, "the usage event", 10*time.Second, func() bool { return len(e.store.UsageEvents(e.user)) == 1 })
	if ev := e.store.UsageEvents(e.user)[0]; !ev.At.Equal(at) {
		t.Errorf("usage event at %v, want the injected clock's %v", ev.At, at)
	}
}
