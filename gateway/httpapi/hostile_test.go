package httpapi_test

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/serve"
)

// hostile sends requests whose method, path, headers and model are chosen
// by an attacker, through a real http.Server built by serve.Server.
type hostile struct {
	t      *testing.T
	url    string
	client *http.Client
	rng    *rand.Rand
}

// tchars are characters HTTP allows in a method (RFC 9110's token).
const tchars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~"

func (h *hostile) word(n int, alphabet string) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[h.rng.IntN(len(alphabet))]
	}
	return string(b)
}

// send does one request; over is true for requests past the server's
// header limit, which may fail to send (the server hangs up on them).
func (h *hostile) send(method, path string, header map[string]string, body string, over bool) int {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatalf("%.40s %.60s: %v", method, path, err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if over {
			return 0
		}
		h.t.Fatalf("%.40s %.60s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// batch sends every kind of hostile request once, each time with fresh
// random methods, paths and models, with and without tokens.
func (h *hostile) batch(valid string) {
	h.t.Helper()
	alnum := tchars[:62]
	for _, auth := range []map[string]string{
		nil,
		{"Authorization": "Bearer " + valid},
		{"Authorization": "Bearer " + h.word(40, alnum)},
	} {
		with := func(extra map[string]string) map[string]string {
			m := map[string]string{}
			for k, v := range auth {
				m[k] = v
			}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		for range 5 {
			// The report of issue 13: random 64 KiB methods.
			h.send(h.word(60<<10, tchars), "/v1/me", auth, "", false)
		}
		h.send(h.word(12, tchars), "/"+h.word(20, alnum), auth, "", false)
		h.send(strings.ToLower(http.MethodGet), "/v1/me", auth, "", false)
		h.send(http.MethodGet, "/"+h.word(30, alnum)+"/"+h.word(30, alnum), auth, "", false)
		h.send(http.MethodGet, "/"+h.word(40<<10, alnum), auth, "", false)
		h.send(http.MethodGet, "/v1/"+h.word(30, alnum), auth, "", false)
		h.send(http.MethodPost, "/v1/"+h.word(30, alnum)+"/%ff%fe%00", auth, "", false)
		h.send(http.MethodDelete, "/healthz/"+h.word(30, alnum), auth, "", false)
		h.send(http.MethodGet, "/v1/me", with(map[string]string{"X-" + h.word(20, alnum): h.word(40<<10, alnum)}), "", false)
		h.send(http.MethodPost, "/v1/chat/completions", with(map[string]string{"Content-Type": "application/json"}),
			fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"hi"}]}`, h.word(2000, alnum)), false)
		// Past the server's limit: refused before any handler.
		h.send(h.word(300<<10, tchars), "/v1/me", auth, "", true)
		h.send(http.MethodGet, "/v1/me", with(map[string]string{"X-Junk": h.word(100<<10, alnum)}), "", true)
	}
	// A real completion, so the model-labelled series are there too.
	if got := h.send(http.MethodPost, "/v1/chat/completions", map[string]string{"Authorization": "Bearer " + valid, "Content-Type": "application/json"},
		`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`, false); got != http.StatusOK {
		h.t.Fatalf("completion: status %d", got)
	}
}

// series lists the series of a /metrics page (name and labels, no value).
func series(page string) []string {
	var out []string
	for line := range strings.Lines(page) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line[:strings.LastIndexByte(line, ' ')])
	}
	slices.Sort(out)
	return out
}

// TestHostileRequestsAddNoSeries: made-up methods (60 KiB, random, lower
// case), random and huge paths, long headers, random model names, with no
// token, a valid one and a forged one, sent through serve.Server and the real
// router, leave /metrics with the same series and about the same size
// (counters move); and no log line grows with them.
func TestHostileRequestsAddNoSeries(t *testing.T) {
	upstream := httptest.NewServer(devllm.New(devllm.Options{ChunkDelay: -1}).Handler())
	t.Cleanup(upstream.Close)
	e := newEnv(t, func(c *config.Config) {
		c.OpenAIAPIKey = "sk-test"
		c.OpenAIBaseURL = upstream.URL + "/v1"
	})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = serve.Server(e.gw.Handler, slog.New(slog.DiscardHandler))
	srv.Start()
	t.Cleanup(srv.Close)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	h := &hostile{t: t, url: srv.URL, client: srv.Client(), rng: rand.New(rand.NewPCG(seed, seed))}
	scrape := func() string {
		rec := httptest.NewRecorder()
		e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	// A user of its own: the quota counters live in the shared Redis.
	valid := e.token("user_"+testenv.UUID(), "h@example.com", "H", nil)

	h.batch(valid) // the first creates the series these requests map to
	before := scrape()
	for range 3 {
		h.batch(valid)
	}
	after := scrape()
	if diff := cmp.Diff(series(before), series(after)); diff != "" {
		t.Errorf("hostile requests changed the series (-before +after):\n%s", diff)
	}
	if len(after) > len(before)+4<<10 {
		t.Errorf("/metrics grew from %d to %d bytes", len(before), len(after))
	}
	for _, want := range []string{
		`sas_http_requests_total{method="other",route="unmatched",status="405"}`,
		`sas_http_requests_total{method="GET",route="unmatched",status="404"}`,
		`sas_http_requests_total{method="POST",route="/v1/chat/completions",status="403"}`,
		`sas_upstream_duration_seconds_count{model="gpt-4o-mini",outcome="complete"} 4`,
	} {
		if !strings.Contains(after, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for line := range strings.Lines(e.logs.String()) {
		if len(line) > 2<<10 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
}

// TestAccessLogClipsMethodAndPath: a 900 KB method and path (a server
// without a header limit would pass them on) write a short request line,
// marked as cut.
func TestAccessLogClipsMethodAndPath(t *testing.T) {
	e := newEnv(t, nil)
	req := httptest.NewRequest("GET", "/", nil)
	req.Method = strings.Repeat("M", 900<<10)
	req.URL.Path = "/v1/" + strings.Repeat("p", 900<<10)
	e.gw.Handler.ServeHTTP(httptest.NewRecorder(), req)
	var line string
	for l := range strings.Lines(e.logs.String()) {
		if strings.Contains(l, `"msg":"request"`) {
			line = l
		}
	}
	if line == "" {
		t.Fatal("no request line in the log")
	}
	if len(line) > 1<<10 {
		t.Errorf("request log line of %d bytes: %.200s…", len(line), line)
	}
	for _, want := range []string{`"method":"MMMMMMMMMMMMMMMM…"`, `"path":"/v1/` + strings.Repeat("p", 252) + `…"`} {
		if !strings.Contains(line, want) {
			t.Errorf("request line lacks %s: %.400s", want, line)
		}
	}
}
