package llmproxy_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/upstream"
	"github.com/signals-sorcery/sas/shared/wire"
)

// fakeUpstream is one upstream of a test table: the dev model (which
// speaks OpenAI's JSON and SSE for chat and Responses) unless the test
// sets a fault, and a count of the requests it received.
type fakeUpstream struct {
	name  string
	url   string // base URL, …/v1
	key   string
	model *devllm.Model
	hits  atomic.Int32
	fault atomic.Pointer[http.HandlerFunc]
	// last is the last request's headers and body.
	last atomic.Pointer[capture]
}

type capture struct {
	header http.Header
	body   string
}

func (f *fakeUpstream) setFault(h http.HandlerFunc) { f.fault.Store(&h) }

func newFakeUpstream(t *testing.T, name string) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{name: name, key: "sk-" + name + "-secret"}
	f.model = devllm.New(devllm.Options{APIKey: f.key, ChunkDelay: -1})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		f.last.Store(&capture{r.Header.Clone(), string(b)})
		r.Body = io.NopCloser(strings.NewReader(string(b)))
		if h := f.fault.Load(); h != nil {
			(*h)(w, r)
			return
		}
		f.model.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/v1"
	return f
}

// refusedURL is a base URL where nothing listens: connection refused.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + "/v1"
}

// upstreamTable makes a table of ups (kind openai unless kinds says) with
// every model of the built-in plans routed to them in order, and extra
// JSON for the models' routes when given.
func upstreamTable(t *testing.T, ups []*fakeUpstream, modify func(string) string) *upstream.Table {
	t.Helper()
	var defs, routes []string
	env := map[string]string{}
	for _, u := range ups {
		keyEnv := "KEY_" + strings.ToUpper(strings.ReplaceAll(u.name, "-", "_"))
		env[keyEnv] = u.key
		defs = append(defs, fmt.Sprintf(`%q:{"kind":"openai","base_url":%q,"key_env":%q,"header_timeout":"500ms"}`, u.name, u.url, keyEnv))
		routes = append(routes, fmt.Sprintf(`{"upstream":%q}`, u.name))
	}
	table := `{"upstreams":{` + strings.Join(defs, ",") + `},"models":{"gpt-4o-mini":[` + strings.Join(routes, ",") + `],"gpt-4o":[` + strings.Join(routes, ",") + `]}}`
	if modify != nil {
		table = modify(table)
	}
	tb, err := upstream.Parse([]byte(table), func(k string) string { return env[k] }, quota.BuiltIn(), quota.BuiltInPrices())
	if err != nil {
		t.Fatalf("%s: %v", table, err)
	}
	return tb
}

// failoverEnv is an env whose gateway routes every model to ups, in order.
func failoverEnv(t *testing.T, ups []*fakeUpstream, modify func(string) string) *env {
	t.Helper()
	tb := upstreamTable(t, ups, modify)
	return newEnv(t, func(c *config.Config) { c.Upstreams = tb }, app.Deps{})
}

// The failures that fail over, each done by the first upstream.
var failures = map[string]http.HandlerFunc{
	"429": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":{"message":"rate limited"}}`, http.StatusTooManyRequests)
	},
	"500": statusHandler(500), "502": statusHandler(502), "503": statusHandler(503), "504": statusHandler(504),
	"401": statusHandler(401), "403": statusHandler(403),
	"reset": func(w http.ResponseWriter, r *http.Request) {
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.(*net.TCPConn).SetLinger(0)
		conn.Close()
	},
	"no headers in time": func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	},
}

func statusHandler(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, `{"error":{"message":"upstream says no","type":"server_error"}}`)
	}
}

// TestFailover: each failure the contract lists, before any byte, moves
// the request to the next upstream — chat and Responses, streamed and
// not — which serves it; the client sees one ordinary answer, the first
// upstream one request, and the request is charged once, the serving
// upstream's usage, with one completion naming the upstream and attempts.
func TestFailover(t *testing.T) {
	cases := map[string]http.HandlerFunc{"refused": nil, "empty stream": func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
	}}
	for name, h := range failures {
		cases[name] = h
	}
	for name, fail := range cases {
		for _, path := range []string{"/v1/chat/completions", "/v1/responses"} {
			for _, stream := range []bool{false, true} {
				if name == "empty stream" && !stream {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/stream=%v", name, path, stream), func(t *testing.T) {
					a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
					if fail == nil {
						a.url = refusedURL(t)
					} else {
						a.setFault(fail)
					}
					e := failoverEnv(t, []*fakeUpstream{a, b}, nil)
					body := fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":"hello there"}]}`, stream)
					if path == "/v1/responses" {
						body = fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"input":"hello there"}`, stream)
					}
					r := e.post(path, body)
					if r.status != 200 || !strings.Contains(r.body, "dev model") {
						t.Fatalf("%d %.300s", r.status, r.body)
					}
					if fail != nil && a.hits.Load() != 1 || b.hits.Load() != 1 {
						t.Errorf("a got %d requests, b %d; want 1 each", a.hits.Load(), b.hits.Load())
					}
					c := e.lastCompletion()
					if c["upstream"] != "b" || c["attempts"] != float64(2) || c["outcome"] != "complete" || c["usage_source"] != "upstream" {
						t.Errorf("completion %v", c)
					}
					if u := e.usage(); u[quota.RequestsPerDay] != 1 || u[quota.TokensPerDay] >= int64(c["reserved_tokens"].(float64)) {
						t.Errorf("charged %v: want one request at the upstream's usage (reserved %v)", u, c["reserved_tokens"])
					}
					rec := httptest.NewRecorder()
					e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
					if !strings.Contains(rec.Body.String(), `sas_upstream_failovers_total{from="a",reason=`) {
						t.Error("no failover in /metrics")
					}
				})
			}
		}
	}
}

// TestNoFailoverAfterTheFirstByte: once the client has received part of
// the answer, a failure ends it (charged by the no-usage rule) and the
// next upstream receives nothing — streamed, and non-streamed after the
// headers and part of the body.
func TestNoFailoverAfterTheFirstByte(t *testing.T) {
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprint("stream=", stream), func(t *testing.T) {
			a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
			a.setFault(func(w http.ResponseWriter, r *http.Request) {
				if stream {
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"half"}}]}`+"\n\n")
				} else {
					w.Header().Set("Content-Type", "application/json")
					w.Header().Set("Content-Length", "1000")
					io.WriteString(w, `{"id":"c","object":"chat.comp`)
				}
				w.(http.Flusher).Flush()
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
			})
			e := failoverEnv(t, []*fakeUpstream{a, b}, nil)
			r := e.post("/v1/chat/completions", fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream))
			if stream && (r.status != 200 || !strings.Contains(r.body, "half")) {
				t.Errorf("the stream: %d %q, want the part that came", r.status, r.body)
			}
			if !stream {
				wantError(t, r, 502, wire.CodeUpstreamError)
			}
			if b.hits.Load() != 0 {
				t.Errorf("the second upstream received %d requests after the first byte", b.hits.Load())
			}
			if c := e.lastCompletion(); c["upstream"] != "a" || c["attempts"] != float64(1) || c["usage_source"] != "reservation" {
				t.Errorf("completion %v", c)
			}
		})
	}
}

// TestNoFailoverOnTheClientsFault: 400, 404 and 422 are relayed as they
// are; the next upstream receives nothing.
func TestNoFailoverOnTheClientsFault(t *testing.T) {
	for _, status := range []int{400, 404, 422} {
		a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
		a.setFault(statusHandler(status))
		e := failoverEnv(t, []*fakeUpstream{a, b}, nil)
		wantError(t, e.post("/v1/chat/completions", hello), status, wire.CodeBadRequest)
		if b.hits.Load() != 0 {
			t.Errorf("%d: the second upstream received %d requests", status, b.hits.Load())
		}
	}
}

// TestEveryUpstreamOut: when both upstreams fail, the last failure is
// answered (502) and all is given back but the minute; after five such
// requests both circuits are open and the next is answered 503
// upstream_unavailable with Retry-After without trying either. A 429's
// Retry-After keeps an upstream out for that long.
func TestEveryUpstreamOut(t *testing.T) {
	a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
	a.setFault(statusHandler(503))
	b.setFault(statusHandler(500))
	e := failoverEnv(t, []*fakeUpstream{a, b}, nil)
	for range upstream.TripAfter {
		wantError(t, e.post("/v1/chat/completions", hello), 502, wire.CodeUpstreamError)
	}
	r := e.post("/v1/chat/completions", hello)
	wantError(t, r, 503, wire.CodeUpstreamUnavailable)
	if ra := r.header.Get("Retry-After"); ra != "30" && ra != "29" {
		t.Errorf("Retry-After %q, want the circuit's 30 s", ra)
	}
	if a.hits.Load() != upstream.TripAfter || b.hits.Load() != upstream.TripAfter {
		t.Errorf("hits a %d, b %d; want %d each (none once open)", a.hits.Load(), b.hits.Load(), upstream.TripAfter)
	}
	if u := e.usage(); u[quota.RequestsPerDay] != 0 || u[quota.TokensPerDay] != 0 || u[quota.USDPerDay] != 0 || u[quota.RequestsPerMinute] != upstream.TripAfter+1 {
		t.Errorf("charged %v: want only the minute's requests", u)
	}
	rec := httptest.NewRecorder()
	e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`sas_upstream_circuit_open{upstream="a"} 1`, `sas_upstream_circuit_open{upstream="b"} 1`,
		`sas_upstream_requests_total{model="gpt-4o-mini",outcome="skipped",upstream="a"} 1`,
		`sas_model_unavailable_total{model="gpt-4o-mini"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Cooling: both answer 429 with Retry-After: 120.
	c, d := newFakeUpstream(t, "c"), newFakeUpstream(t, "d")
	for _, u := range []*fakeUpstream{c, d} {
		u.setFault(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "120")
			http.Error(w, `{"error":{"message":"slow down"}}`, http.StatusTooManyRequests)
		})
	}
	e = failoverEnv(t, []*fakeUpstream{c, d}, nil)
	wantError(t, e.post("/v1/chat/completions", hello), 503, wire.CodeUnavailable) // the last attempt's 429
	r = e.post("/v1/chat/completions", hello)
	wantError(t, r, 503, wire.CodeUpstreamUnavailable)
	if ra := r.header.Get("Retry-After"); ra != "120" && ra != "119" {
		t.Errorf("Retry-After %q, want the 429's 120 s", ra)
	}
	if c.hits.Load() != 1 || d.hits.Load() != 1 {
		t.Errorf("hits %d, %d; want 1 each (cooling after)", c.hits.Load(), d.hits.Load())
	}
}

// TestUnreachableUpstreamsOpenTheirCircuits: connections refused count as
// failures for the breaker like 5xx answers: after five requests both
// circuits are open and none is tried.
func TestUnreachableUpstreamsOpenTheirCircuits(t *testing.T) {
	a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
	a.url, b.url = refusedURL(t), refusedURL(t)
	e := failoverEnv(t, []*fakeUpstream{a, b}, nil)
	for range upstream.TripAfter {
		wantError(t, e.post("/v1/chat/completions", hello), 502, wire.CodeUpstreamError)
	}
	wantError(t, e.post("/v1/chat/completions", hello), 503, wire.CodeUpstreamUnavailable)
}

// TestUpstreamErrorWithoutAnErrorObject: a failing upstream whose JSON
// body has no "error" object is an upstream error like any other.
func TestUpstreamErrorWithoutAnErrorObject(t *testing.T) {
	a := newFakeUpstream(t, "a")
	a.setFault(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"detail":"internal"}`)
	})
	e := failoverEnv(t, []*fakeUpstream{a}, nil)
	wantError(t, e.post("/v1/chat/completions", hello), 502, wire.CodeUpstreamError)
}

// TestAtMostThreeAttempts: four failing upstreams cost three attempts.
func TestAtMostThreeAttempts(t *testing.T) {
	var ups []*fakeUpstream
	for _, n := range []string{"a", "b", "c", "d"} {
		u := newFakeUpstream(t, n)
		u.setFault(statusHandler(502))
		ups = append(ups, u)
	}
	e := failoverEnv(t, ups, nil)
	wantError(t, e.post("/v1/chat/completions", hello), 502, wire.CodeUpstreamError)
	if ups[2].hits.Load() != 1 || ups[3].hits.Load() != 0 {
		t.Errorf("third upstream %d requests, fourth %d; want 1 and 0", ups[2].hits.Load(), ups[3].hits.Load())
	}
	if c := e.lastCompletion(); c["attempts"] != float64(3) {
		t.Errorf("completion %v", c)
	}
}

// TestSettledAtTheServingPrice: the reservation is made at the highest
// price of the model's routes; the charge is the serving route's price.
func TestSettledAtTheServingPrice(t *testing.T) {
	a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
	a.setFault(statusHandler(503))
	usage := `{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100}`
	b.setFault(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":`+usage+`}`)
	})
	// b is ten times cheaper than the price table; a is at the table's.
	e := failoverEnv(t, []*fakeUpstream{a, b}, func(s string) string {
		return strings.Replace(s, `{"upstream":"b"}`, `{"upstream":"b","price":{"input":0.015,"cached_input":0.0075,"output":0.06}}`, 1)
	})
	if r := e.post("/v1/chat/completions", hello); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	c := e.lastCompletion()
	// Reserved at gpt-4o-mini's table price (a's): 9 × 0.15 + 1024 × 0.60 µ$.
	if c["reserved_usd"] != "0.000616" {
		t.Errorf("reserved %v, want the highest route price", c["reserved_usd"])
	}
	// Charged at b's: 1000 × 0.015 + 100 × 0.06 = 21 µ$.
	if u := e.usage(); u[quota.USDPerDay] != 21 || u[quota.TokensPerDay] != 1100 {
		t.Errorf("charged %v, want 21 µ$ and 1100 tokens", u)
	}
	// One usage event, naming the serving upstream and the attempts.
	var events []gateway.UsageEvent
	waitFor(t, "the usage event in the ledger", func() bool { events = e.store.UsageEvents(e.user); return len(events) > 0 })
	if len(events) != 1 || events[0].Upstream != "b" || events[0].Attempts != 2 || events[0].CostMicros != 21 {
		t.Errorf("usage events %+v, want one from b after 2 attempts, 21 µ$", events)
	}
}

// TestWhatEachKindReceives: openai gets a Bearer key and the
// gateway-owned fields; azure an api-key header and the deployment as the
// model; openai-compatible a Bearer key and none of the owned fields.
func TestWhatEachKindReceives(t *testing.T) {
	o, az, co := newFakeUpstream(t, "o"), newFakeUpstream(t, "az"), newFakeUpstream(t, "co")
	for _, u := range []*fakeUpstream{az, co} {
		u.setFault(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)
		})
	}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"prompt_cache_key":"k","service_tier":"flex"}`
	for _, tc := range []struct {
		first   *fakeUpstream
		modify  func(string) string
		check   func(c *capture) string
		scenery string
	}{
		{o, nil, func(c *capture) string {
			if c.header.Get("Authorization") != "Bearer "+o.key || !strings.Contains(c.body, `"store":false`) || !strings.Contains(c.body, `"safety_identifier"`) ||
				!strings.Contains(c.body, `"prompt_cache_key":"sas_`) || !strings.Contains(c.body, `"model":"gpt-4o-mini"`) {
				return "openai"
			}
			return ""
		}, "openai"},
		{az, func(s string) string {
			s = strings.Replace(s, `"az":{"kind":"openai"`, `"az":{"kind":"azure"`, 1)
			return strings.Replace(s, `{"upstream":"az"}`, `{"upstream":"az","model":"my-deployment"}`, 1)
		}, func(c *capture) string {
			if c.header.Get("api-key") != az.key || c.header.Get("Authorization") != "" || !strings.Contains(c.body, `"model":"my-deployment"`) ||
				!strings.Contains(c.body, `"store":false`) || !strings.Contains(c.body, `"safety_identifier"`) {
				return "azure"
			}
			return ""
		}, "azure"},
		{co, func(s string) string {
			return strings.Replace(s, `"co":{"kind":"openai"`, `"co":{"kind":"openai-compatible"`, 1)
		},
			func(c *capture) string {
				if c.header.Get("Authorization") != "Bearer "+co.key {
					return "compatible: key"
				}
				for _, f := range []string{`"store"`, `"safety_identifier"`, `"prompt_cache_key"`, `"service_tier"`} {
					if strings.Contains(c.body, f) {
						return "compatible: sent " + f
					}
				}
				return ""
			}, "openai-compatible"},
	} {
		e := failoverEnv(t, []*fakeUpstream{tc.first}, tc.modify)
		if r := e.post("/v1/chat/completions", body); r.status != 200 {
			t.Fatalf("%s: %d %s", tc.scenery, r.status, r.body)
		}
		c := tc.first.last.Load()
		if what := tc.check(c); what != "" {
			t.Errorf("%s received %v\n%s", what, c.header, c.body)
		}
		if strings.Contains(c.body, e.tok) || strings.Contains(fmt.Sprint(c.header), e.tok) {
			t.Errorf("%s received the user's token", tc.scenery)
		}
	}
	// An openai-compatible upstream serves chat only unless it says so: a
	// Responses call of a model only it serves is refused before anything
	// is reserved.
	e := failoverEnv(t, []*fakeUpstream{co}, func(s string) string {
		return strings.Replace(s, `"co":{"kind":"openai"`, `"co":{"kind":"openai-compatible"`, 1)
	})
	wantError(t, e.post("/v1/responses", `{"model":"gpt-4o-mini","input":"hi"}`), 400, wire.CodeBadRequest)
	if u := e.usage(); u[quota.RequestsPerMinute] != 0 {
		t.Errorf("a refused Responses call consumed %v", u)
	}
}

// TestBudgetsHoldWhileFailingOver: three instances sharing Redis, whose
// first upstream refuses every request: ten overlapping requests whose
// reservations fit twice in the day's budget — exactly two are admitted,
// each charged once.
func TestBudgetsHoldWhileFailingOver(t *testing.T) {
	plans, _ := fitsTwice()
	a, b := newFakeUpstream(t, "a"), newFakeUpstream(t, "b")
	a.setFault(statusHandler(503))
	g := &gate{open: make(chan struct{})}
	b.setFault(g.hold(b.model.Handler()))
	tb := upstreamTable(t, []*fakeUpstream{a, b}, nil)
	e := newEnv(t, func(c *config.Config) { c.Upstreams, c.Plans = tb, plans }, app.Deps{})
	urls := []string{e.url}
	for range 2 {
		gw, err := app.New(t.Context(), config.Config{Issuer: e.iss.Issuer(), Audiences: []string{aud}, RedisURL: testenv.RedisURL(t),
			Upstreams: tb, Plans: plans, UsageStream: e.stream}, nilLogger(), app.Deps{Store: e.store})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(gw.Close)
		srv := httptest.NewServer(gw.Handler)
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	admitted, refused := e.burst(t, g, urls, 10, chatBody("gpt-4o-mini", 3000, true))
	if admitted != 2 || refused[wire.CodeQuotaExceeded+"/"+quota.TokensPerDay] != 8 {
		t.Errorf("admitted %d, refused %v; want exactly 2 and 8 on tokens_per_day", admitted, refused)
	}
	if u := e.usage(); u[quota.RequestsPerDay] != 2 {
		t.Errorf("charged %v, want 2 requests", u)
	}
}

// TestEstimateMargin: a model priced with an estimate_margin (one not
// tokenized with o200k_base) reserves its prompt estimate times the
// margin.
func TestEstimateMargin(t *testing.T) {
	a := newFakeUpstream(t, "a")
	e := failoverEnv(t, []*fakeUpstream{a}, func(s string) string {
		return strings.Replace(s, `{"upstream":"a"}`, `{"upstream":"a","price":{"input":0.15,"cached_input":0.075,"output":0.6,"estimate_margin":2}}`, 1)
	})
	if r := e.post("/v1/chat/completions", hello); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// "hello there" is 9 tokens by o200k_base; free's output cap 1024.
	if c := e.lastCompletion(); c["prompt_estimate"] != float64(18) || c["reserved_tokens"] != float64(18+1024) {
		t.Errorf("completion %v, want a prompt estimate of 2 × 9", c)
	}
}
