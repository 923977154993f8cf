package llmproxy_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/app"
)

// slowWriter makes an upstream slow between the chunks it writes.
type slowWriter struct {
	http.ResponseWriter
	delay time.Duration
}

func (w slowWriter) Write(b []byte) (int, error) {
	time.Sleep(w.delay)
	n, err := w.ResponseWriter.Write(b)
	w.ResponseWriter.(http.Flusher).Flush()
	return n, err
}

func (w slowWriter) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// metricValue reads one series' value from a /metrics page (0: absent).
func metricValue(t *testing.T, page, series string) float64 {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(page))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// TestOverheadExcludesUpstreamWait: sas_gateway_overhead_seconds counts
// each metered request once — streamed or not, refused by the upstream
// too — and none that was not metered, and a slow upstream (400 ms to its
// headers, 100 ms before each chunk) does not move it: every observation
// stays under 100 ms, where counting the waits would put each above 400.
func TestOverheadExcludesUpstreamWait(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	const headers, chunk = 400 * time.Millisecond, 100 * time.Millisecond
	var refuse atomic.Bool
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(headers)
		if refuse.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"message":"bad","type":"invalid_request_error"}}`))
			return
		}
		e.model.Handler().ServeHTTP(slowWriter{w, chunk}, r)
	})
	const streamed = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hello there"}]}`
	for _, body := range []string{hello, streamed, hello, streamed} {
		if r := e.post("/v1/chat/completions", body); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
	}
	refuse.Store(true)
	wantError(t, e.post("/v1/chat/completions", hello), http.StatusBadRequest, "bad_request")
	// Not metered: refused before admission, and not a metered route.
	wantError(t, e.post("/v1/chat/completions", `{"model":"gpt-4o-mini"}`), http.StatusBadRequest, "bad_request")
	if r := e.get("/v1/me"); r.status != http.StatusOK {
		t.Fatalf("/v1/me: %d", r.status)
	}

	rec := httptest.NewRecorder()
	e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	page := rec.Body.String()
	const h = `sas_gateway_overhead_seconds`
	if n := metricValue(t, page, h+`_count{endpoint="chat.completions"}`); n != 5 {
		t.Errorf("%d metered requests observed, want 5", int(n))
	}
	if n := metricValue(t, page, h+`_count{endpoint="responses"}`); n != 0 {
		t.Errorf("%d observed as responses, want 0", int(n))
	}
	if fast := metricValue(t, page, h+`_bucket{endpoint="chat.completions",le="0.1"}`); fast != 5 {
		t.Errorf("%d of 5 observations under 100 ms: the upstream's wait is counted (sum %.3f s)",
			int(fast), metricValue(t, page, h+`_sum{endpoint="chat.completions"}`))
	}
}
