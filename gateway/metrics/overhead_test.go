package metrics_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/metrics"
)

// TestOverheadObservedOnceIfMetered: a request not marked metered is not
// observed; a metered one once, under its endpoint, net of its waits.
func TestOverheadObservedOnceIfMetered(t *testing.T) {
	m := metrics.New()
	_, plain := metrics.StartOverhead(context.Background())
	m.ObserveOverhead(plain)
	ctx, o := metrics.StartOverhead(context.Background())
	metrics.OverheadFrom(ctx).Metered("responses")
	o.Waited(time.Hour) // more than the request lasted: observed as 0, not negative
	m.ObserveOverhead(o)
	var none *metrics.Overhead
	none.Metered("responses") // nil-safe, as for requests without one
	none.Waited(time.Second)
	m.ObserveOverhead(none)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page := rec.Body.String()
	for _, want := range []string{`sas_gateway_overhead_seconds_count{endpoint="responses"} 1`,
		`sas_gateway_overhead_seconds_sum{endpoint="responses"} 0`} {
		if !strings.Contains(page, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(page, `sas_gateway_overhead_seconds_count{endpoint="chat.completions"}`) {
		t.Error("an unmetered request was observed")
	}
}

// BenchmarkOverheadBookkeeping is what the overhead histogram adds to one
// metered request: the stopwatch in the context, the metered mark, three
// waits (send, two body reads) and the observation.
func BenchmarkOverheadBookkeeping(b *testing.B) {
	m := metrics.New()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c, o := metrics.StartOverhead(ctx)
		metrics.OverheadFrom(c).Metered("chat.completions")
		for range 3 {
			start := time.Now()
			o.Waited(time.Since(start))
		}
		m.ObserveOverhead(o)
	}
}
