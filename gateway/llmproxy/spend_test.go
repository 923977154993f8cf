package llmproxy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/llmproxy"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/tokenizer"
	"github.com/signals-sorcery/sas/shared/wire"
)

// gate is an upstream that holds every request until opened, then lets
// the dev model answer: admitted requests are all in flight at once.
type gate struct {
	open    chan struct{}
	once    sync.Once
	arrived atomic.Int64
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (e *env) gated() *gate {
	g := &gate{open: make(chan struct{})}
	e.setFault(g.hold(e.model.Handler()))
	return g
}

// hold is next, answering only once the gate is open.
func (g *gate) hold(next http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.arrived.Add(1)
		select {
		case <-g.open:
		case <-r.Context().Done():
			return
		}
		next.ServeHTTP(w, r)
	}
}

// burst sends n copies of body to /v1/chat/completions at once, spread
// over urls, and returns the status of each and the error bodies by code.
// It opens the gate once every refusal is back (the admitted ones are then
// waiting upstream).
func (e *env) burst(t *testing.T, g *gate, urls []string, n int, body string) (admitted int, refused map[string]int) {
	t.Helper()
	return e.burstOf(t, g, urls, n, request{"/v1/chat/completions", body})
}

// request is a POST of body to path.
type request struct{ path, body string }

// burstOf is burst over several requests, taken in turn.
func (e *env) burstOf(t *testing.T, g *gate, urls []string, n int, reqs ...request) (admitted int, refused map[string]int) {
	t.Helper()
	type answer struct {
		status int
		code   string
		limit  string
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			rq := reqs[i%len(reqs)]
			req, _ := http.NewRequest("POST", urls[i%len(urls)]+rq.path, strings.NewReader(rq.body))
			req.Header.Set("Authorization", "Bearer "+e.tok)
			r := e.do(req)
			var eb wire.ErrorBody
			_ = json.Unmarshal([]byte(r.body), &eb)
			answers <- answer{r.status, eb.Error.Code, eb.Error.Limit}
		})
	}
	refused = map[string]int{}
	got := 0
	for got < n {
		select {
		case a := <-answers:
			got++
			if a.status == 200 {
				admitted++
				continue
			}
			if a.status != 429 {
				t.Errorf("status %d %s", a.status, a.code)
			}
			refused[a.code+"/"+a.limit]++
		case <-time.After(100 * time.Millisecond):
			// Everything not yet answered is waiting upstream: let it go.
			if int64(n-got) == g.arrived.Load() {
				g.release()
			}
		}
	}
	wg.Wait()
	return admitted, refused
}

// chatBody is a chat request whose prompt is words copies of " word".
func chatBody(model string, words int, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"user","content":%q}]}`, model, stream, strings.Repeat("word ", words))
}

// estimate is the gateway's prompt estimate of chatBody: the text, the
// role, 3 for the message and 3 for the reply.
func estimate(words int) int64 {
	return int64(tokenizer.O200k().Count(strings.Repeat("word ", words)) + 1 + 3 + 3)
}

// fitsTwice is the built-in plans with a free day's token budget that
// holds two and a half reservations of a 3000-word prompt (chatBody) at
// the free output cap, and no minute or concurrency limit in the way.
func fitsTwice() (quota.Plans, quota.Plan) {
	reservation := estimate(3000) + quota.BuiltIn()["free"].MaxTokens
	plans := quota.BuiltIn()
	free := plans["free"]
	free.RequestsPerMinute, free.ConcurrentRequests = 1000, 0
	free.TokensPerDay = reservation*2 + reservation/2
	plans["free"] = free
	return plans, free
}

// TestReservationsHoldUnderConcurrency: 10 streamed requests at once whose
// reservations fit only twice in the day's token budget, against an
// upstream that holds them so they overlap: exactly 2 are admitted, on one
// instance and spread over three, and the day's charge stays within the
// budget.
func TestReservationsHoldUnderConcurrency(t *testing.T) {
	plans, free := fitsTwice()
	for _, instances := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d instances", instances), func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
			urls := append([]string{e.url}, e.extraInstances(t, plans, instances-1)...)
			admitted, refused := e.burst(t, e.gated(), urls, 10, chatBody("gpt-4o-mini", 3000, true))
			if admitted != 2 || refused["quota_exceeded/tokens_per_day"] != 8 {
				t.Errorf("admitted %d, refused %v; want 2 admitted and 8 refused by tokens_per_day", admitted, refused)
			}
			if used := e.usage()[quota.TokensPerDay]; used > free.TokensPerDay || used == 0 {
				t.Errorf("the day's charge is %d tokens, budget %d", used, free.TokensPerDay)
			}
		})
	}
}

// TestMoneyBudgetHoldsUnderConcurrency: the same for usd_per_day, with a
// pro user on gpt-4o's prices.
func TestMoneyBudgetHoldsUnderConcurrency(t *testing.T) {
	price := quota.BuiltInPrices()["gpt-4o"]
	cost := price.Cost(estimate(3000), 0, 4096)
	plans := quota.BuiltIn()
	pro := plans["pro"]
	pro.RequestsPerMinute, pro.ConcurrentRequests = 1000, 0
	pro.USDPerDay = cost*2 + cost/2
	plans["pro"] = pro
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	e.setPlan(t, "pro")
	urls := append([]string{e.url}, e.extraInstances(t, plans, 2)...)
	admitted, refused := e.burst(t, e.gated(), urls, 10, chatBody("gpt-4o", 3000, true))
	if admitted != 2 || refused["quota_exceeded/usd_per_day"] != 8 {
		t.Errorf("admitted %d, refused %v; want 2 admitted and 8 refused by usd_per_day", admitted, refused)
	}
	used := e.usage()
	if used[quota.USDPerDay] > int64(pro.USDPerDay) || used[quota.USDPerDay] == 0 || used[quota.USDPerMonth] != used[quota.USDPerDay] {
		t.Errorf("spent %v µ$, budget %d a day", used, pro.USDPerDay)
	}
}

// TestOvershootOfTheFirstVersion: what a new free user did to the first
// version (ten streamed requests at once with a large prompt: all
// admitted, 45× the day's tokens charged) on the built-in plans.
func TestOvershootOfTheFirstVersion(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	admitted, refused := e.burst(t, e.gated(), []string{e.url}, 10, chatBody("gpt-4o-mini", 7000, true))
	if admitted > 2 || admitted == 0 {
		t.Errorf("admitted %d (refused %v); the free plan allows 2 at a time and 2 reservations a day", admitted, refused)
	}
	if used := e.usage()[quota.TokensPerDay]; used > 20_000 {
		t.Errorf("charged %d tokens of a 20,000 budget", used)
	}
}

// TestCachedTokensAtTheCachedPrice: settlement charges the upstream's
// figures, cached prompt tokens at the cached price, and gives the rest of
// the reservation back at once.
func TestCachedTokensAtTheCachedPrice(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],
			"usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"prompt_tokens_details":{"cached_tokens":600}}}`)
	})
	if r := e.post("/v1/chat/completions", hello); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	// 400 × 0.15 + 600 × 0.075 + 100 × 0.60 µ$
	if u := e.usage(); u[quota.TokensPerDay] != 1100 || u[quota.USDPerDay] != 165 || u[quota.USDPerMonth] != 165 {
		t.Errorf("charged %v; want 1100 tokens and 165 µ$", u)
	}
	r := e.get("/v1/limits")
	if !strings.Contains(r.body, `{"name":"usd_per_day","limit":0.05,"remaining":0.049835,`) {
		t.Errorf("/v1/limits: %s", r.body)
	}
	rec := httptest.NewRecorder()
	e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `sas_spend_usd_total{model="gpt-4o-mini",plan="free"} 0.000165`) {
		t.Error("the spend is not in /metrics")
	}
}

// TestUsageIsAskedForAndChargedExactly: a streamed request whose client
// did not ask for usage still reaches the upstream asking for it, and is
// charged exactly what the upstream reports — against an upstream that,
// like OpenAI, reports usage only when asked.
func TestUsageIsAskedForAndChargedExactly(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	var asked atomic.Bool
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		asked.Store(req.StreamOptions.IncludeUsage)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		if req.StreamOptions.IncludeUsage {
			io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1234,"completion_tokens":56,"total_tokens":1290}}`+"\n\n")
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	r := e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	if r.status != 200 || strings.Contains(r.body, "usage") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if !asked.Load() {
		t.Error("the upstream was not asked for usage")
	}
	if c := e.lastCompletion(); c["usage_source"] != "upstream" || e.usage()[quota.TokensPerDay] != 1290 {
		t.Errorf("charged %v (%v), want exactly the upstream's 1290", e.usage(), c)
	}
}

// TestGatewayOwnsCostFields: what the upstream receives of the fields that
// decide cost or data retention.
func TestGatewayOwnsCostFields(t *testing.T) {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.ServiceTiers = []string{"flex"}
	plans["free"] = free
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	sent := func(body string) map[string]json.RawMessage {
		t.Helper()
		if r := e.post("/v1/chat/completions", body); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(e.model.Last().Body, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m := sent(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"store":true,"metadata":{"k":"v"},
		"service_tier":"priority","user":"bob@example.com","safety_identifier":"bob","x_future":1}`)
	if string(m["store"]) != "false" || m["metadata"] != nil || m["service_tier"] != nil || m["user"] != nil || m["x_future"] == nil {
		t.Errorf("upstream received %s", e.model.Last().Body)
	}
	var sid string
	_ = json.Unmarshal(m["safety_identifier"], &sid)
	if sid != llmproxy.SafetyIdentifier(e.user) || strings.Contains(sid, e.user) || len(sid) > 64 || !strings.HasPrefix(sid, "sas_") {
		t.Errorf("safety_identifier = %q", sid)
	}
	if m := sent(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"service_tier":"flex"}`); string(m["service_tier"]) != `"flex"` {
		t.Errorf("a tier the plan allows was dropped: %s", m["service_tier"])
	}
	a1, a2, b := llmproxy.SafetyIdentifier("user_a"), llmproxy.SafetyIdentifier("user_a"), llmproxy.SafetyIdentifier("user_b")
	if a1 != a2 || a1 == b {
		t.Error("the pseudonym is not stable per user, or not distinct between users")
	}
}

// TestPromptTooLarge: a prompt over max_input_tokens is refused before the
// quota and the upstream, naming the limit.
func TestPromptTooLarge(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	r := e.post("/v1/chat/completions", chatBody("gpt-4o-mini", 9000, false))
	wantError(t, r, 400, wire.CodePromptTooLarge)
	if !strings.Contains(r.body, `"limit":"max_input_tokens"`) || !strings.Contains(r.body, "8000") {
		t.Errorf("body: %s", r.body)
	}
	if u := e.usage(); u[quota.RequestsPerMinute] != 0 || u[quota.TokensPerDay] != 0 || e.model.Last().Body != nil {
		t.Errorf("consumed %v or reached the upstream", u)
	}
	if r := e.post("/v1/chat/completions", chatBody("gpt-4o-mini", 7000, false)); r.status != 200 {
		t.Errorf("a prompt under the limit: %d %s", r.status, r.body)
	}
}

// TestConcurrentRequests: the plan's requests in flight are capped across
// instances; one more is refused at once and consumes nothing; a finished
// request frees its slot.
func TestConcurrentRequests(t *testing.T) {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.RequestsPerMinute = 1000
	plans["free"] = free
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	urls := append([]string{e.url}, e.extraInstances(t, plans, 2)...)
	g := e.gated()
	admitted, refused := e.burst(t, g, urls, 6, hello)
	if admitted != 2 || refused["too_many_concurrent/concurrent_requests"] != 4 {
		t.Errorf("admitted %d, refused %v; want 2 and 4 too_many_concurrent", admitted, refused)
	}
	if u := e.usage(); u[quota.RequestsPerDay] != 2 {
		t.Errorf("refusals consumed: %v", u)
	}
	g.release()
	r := e.post("/v1/chat/completions", hello)
	if r.status != 200 {
		t.Errorf("after the slots were freed: %d %s", r.status, r.body)
	}
}

// TestLongStreamKeepsItsSlot: a stream that runs for several leases keeps
// its slot (it is renewed), so a second request is still refused.
func TestLongStreamKeepsItsSlot(t *testing.T) {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.ConcurrentRequests = 1
	plans["free"] = free
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{SlotLease: 300 * time.Millisecond})
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) }) // a failure must not leave the stream hanging
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"long"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "data: [DONE]\n\n")
	})
	done := make(chan response, 1)
	go func() {
		done <- e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`)
	}()
	waitFor(t, "the stream to hold its slot", func() bool { return e.usage()[quota.RequestsPerDay] == 1 })
	time.Sleep(1200 * time.Millisecond) // four leases
	e.fault.Store(nil)
	wantError(t, e.post("/v1/chat/completions", hello), 429, wire.CodeTooManyConcurrent)
	once.Do(func() { close(release) })
	if r := <-done; r.status != 200 {
		t.Fatalf("stream: %d", r.status)
	}
	if r := e.post("/v1/chat/completions", hello); r.status != 200 {
		t.Errorf("after the stream: %d %s", r.status, r.body)
	}
}

// TestClientGoneIsNotAnUpstreamError: a client that leaves before the
// answer is logged as such (no error line, no error report, no upstream
// error outcome) and still charged its reservation.
func TestClientGoneIsNotAnUpstreamError(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) { hang(r) })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/chat/completions", strings.NewReader(hello))
	req.Header.Set("Authorization", "Bearer "+e.tok)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("answered")
	}
	waitFor(t, "the access log line", func() bool { return strings.Contains(e.logs.String(), `"status":499`) })
	logs := e.logs.String()
	if strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, "client went away") {
		t.Errorf("logs:\n%s", logs)
	}
	if c := e.lastCompletion(); c["outcome"] != "client_gone" || e.usage()[quota.TokensPerDay] != int64(c["reserved_tokens"].(float64)) {
		t.Errorf("completion %v, charged %v", c, e.usage())
	}
	rec := httptest.NewRecorder()
	e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if m := rec.Body.String(); strings.Contains(m, `outcome="upstream_error"`) || !strings.Contains(m, `outcome="client_gone"`) {
		t.Errorf("metrics count the client as an upstream error")
	}
}

// TestUpstreamBodyLifetime: nothing of a finished request outlives it —
// the idle timer on the upstream body is stopped when the body is closed.
// (It once was not, for non-streamed answers: every request's context and
// timer lived on for the idle timeout, and memory grew with the load.)
func TestUpstreamBodyLifetime(t *testing.T) {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.RequestsPerMinute, free.RequestsPerDay = 1000, 1000
	plans["free"] = free
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{UpstreamIdleTimeout: time.Hour})
	type tracked struct {
		context.Context
		_ [64]byte
	}
	const n = 30
	refs := make([]weak.Pointer[tracked], 0, n)
	for range n {
		ctx := &tracked{Context: context.Background()}
		for _, body := range []string{hello, `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`} {
			req := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body)).WithContext(ctx)
			req.Header.Set("Authorization", "Bearer "+e.tok)
			rec := httptest.NewRecorder()
			e.gw.Handler.ServeHTTP(rec, req)
			if rec.Code != 200 {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
		refs = append(refs, weak.Make(ctx))
	}
	// A goroutine of a finished request (a stream's reader) may not have
	// returned yet when the handler does: collect again for up to a
	// second. An idle timer would hold its request for the whole idle
	// timeout (an hour here).
	alive := 0
	for range 20 {
		runtime.GC()
		runtime.GC()
		alive = 0
		for _, r := range refs {
			if r.Value() != nil {
				alive++
			}
		}
		if alive <= 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if alive > 1 {
		t.Errorf("%d of %d finished requests are still referenced (by an idle timer?)", alive, n)
	}
}
