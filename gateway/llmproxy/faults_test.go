package llmproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestUpstreamErrors: each upstream failure maps to the contract's answer.
// A refusal that is the request's fault (400/404/422) counts as a request
// but costs no tokens or money; a failure of the upstream gives back the
// day's request, tokens and money; the minute's request is never given
// back.
func TestUpstreamErrors(t *testing.T) {
	e := newEnv(t, nil, app.Deps{UpstreamHeaderTimeout: 300 * time.Millisecond})
	cases := []struct {
		name   string
		fault  http.HandlerFunc
		status int
		code   string
		check  func(t *testing.T, r response)
		// counted: the day's request stays counted (the client's fault).
		counted bool
	}{
		{"400 relayed", func(w http.ResponseWriter, r *http.Request) {
			devllm.Error(w, 400, "Invalid value for 'temperature': must be between 0 and 2.", "invalid_request_error", "")
		}, 400, wire.CodeBadRequest, func(t *testing.T, r response) {
			if !strings.Contains(r.body, "must be between 0 and 2") {
				t.Errorf("OpenAI's message not relayed: %s", r.body)
			}
		}, true},
		{"404 relayed", func(w http.ResponseWriter, r *http.Request) {
			devllm.Error(w, 404, "The model does not exist.", "invalid_request_error", "model_not_found")
		}, 404, wire.CodeBadRequest, nil, true},
		{"422 relayed", func(w http.ResponseWriter, r *http.Request) {
			devllm.Error(w, 422, "Unprocessable.", "invalid_request_error", "")
		}, 422, wire.CodeBadRequest, nil, true},
		{"401 our key", func(w http.ResponseWriter, r *http.Request) {
			devllm.Error(w, 401, "Incorrect API key provided: sk-upstr****test.", "invalid_request_error", "invalid_api_key")
		}, 502, wire.CodeUpstreamError, func(t *testing.T, r response) {
			if strings.Contains(r.body, "sk-upstr") {
				t.Errorf("upstream key hint reached the client: %s", r.body)
			}
		}, false},
		{"403 our key", func(w http.ResponseWriter, r *http.Request) {
			devllm.Error(w, 403, "Country not supported.", "invalid_request_error", "")
		}, 502, wire.CodeUpstreamError, nil, false},
		{"429 our org", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			devllm.Error(w, 429, "Rate limit reached for organization.", "requests", "rate_limit_exceeded")
		}, 503, wire.CodeUnavailable, func(t *testing.T, r response) {
			if r.header.Get("Retry-After") != "7" {
				t.Errorf("Retry-After = %q, want 7", r.header.Get("Retry-After"))
			}
		}, false},
		{"500", func(w http.ResponseWriter, r *http.Request) {
			devllm.Error(w, 500, "The server had an error.", "server_error", "")
		}, 502, wire.CodeUpstreamError, nil, false},
		{"hung upstream", func(w http.ResponseWriter, r *http.Request) {
			hang(r) // never answers
		}, 502, wire.CodeUpstreamError, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.setFault(tc.fault)
			before := e.usage()
			start := time.Now()
			r := e.post("/v1/chat/completions", hello)
			wantError(t, r, tc.status, tc.code)
			if tc.check != nil {
				tc.check(t, r)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			want := maps.Clone(before)
			want[quota.RequestsPerMinute]++
			if tc.counted {
				want[quota.RequestsPerDay]++
			}
			if diff := cmp.Diff(want, e.usage()); diff != "" {
				t.Errorf("quota after the answer (-want +got):\n%s", diff)
			}
		})
	}
	e.fault.Store(nil)
	unreachable := newEnv(t, func(c *config.Config) { c.OpenAIBaseURL = "http://127.0.0.1:9/v1" }, app.Deps{})
	wantError(t, unreachable.post("/v1/chat/completions", hello), 502, wire.CodeUpstreamError)
	if strings.Contains(unreachable.logs.String(), upstreamKey) {
		t.Error("the upstream key is in the logs")
	}
}

// TestStreamFaults: a malformed stream, a stream cut midway and a silent
// stream end the client's stream; none reported usage, so each is charged
// its whole reservation, never less.
func TestStreamFaults(t *testing.T) {
	e := newEnv(t, nil, app.Deps{UpstreamIdleTimeout: 300 * time.Millisecond})
	start := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // so the server notices when the proxy hangs up
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"partial answer"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
	}
	for name, tc := range map[string]struct {
		fault   http.HandlerFunc
		outcome string
	}{
		"malformed": {func(w http.ResponseWriter, r *http.Request) {
			start(w, r)
			io.WriteString(w, "data: {not json\n\ndata: [DONE]\n\n")
		}, `"outcome":"complete"`},
		"cut midway": {func(w http.ResponseWriter, r *http.Request) {
			start(w, r)
			panic(http.ErrAbortHandler) // the connection drops, no [DONE]
		}, `"outcome":"upstream_cut"`},
		"silent": {func(w http.ResponseWriter, r *http.Request) {
			start(w, r)
			hang(r)
		}, `"outcome":"idle_timeout"`},
	} {
		t.Run(name, func(t *testing.T) {
			e.setFault(tc.fault)
			before := e.usage()[quota.TokensPerDay]
			r := e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`)
			if r.status != 200 || !strings.Contains(r.body, "partial answer") {
				t.Fatalf("%d %s", r.status, r.body)
			}
			c := e.lastCompletion()
			if !strings.Contains(e.logs.String(), tc.outcome) || c["usage_source"] != "reservation" {
				t.Errorf("log lacks %s and usage_source=reservation: %v", tc.outcome, c)
			}
			if got, reserved := e.usage()[quota.TokensPerDay]-before, int64(c["reserved_tokens"].(float64)); got != reserved || reserved < 1024 {
				t.Errorf("charged %d tokens, want the whole reservation %d", got, reserved)
			}
		})
	}
}

// TestClientDisconnectMidStream: the upstream request is cancelled, the
// tokens are still charged, and nothing is left running (goleak in
// TestMain checks the goroutines).
func TestClientDisconnectMidStream(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	upstreamGone := make(chan struct{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; ; i++ {
			if _, err := io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"word "}}]}`+"\n\n"); err != nil {
				break
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				close(upstreamGone)
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		close(upstreamGone)
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	req.Header.Set("Authorization", "Bearer "+e.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for range 5 {
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	resp.Body.Close()
	select {
	case <-upstreamGone:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
	waitFor(t, "the settlement after the client left", func() bool { return strings.Contains(e.logs.String(), `"msg":"completion"`) })
	if c := e.lastCompletion(); c["outcome"] != "client_gone" || c["usage_source"] != "reservation" || e.usage()[quota.TokensPerDay] != int64(c["reserved_tokens"].(float64)) {
		t.Errorf("after the client left mid-stream: %v, charged %v", c, e.usage())
	}
}

// TestRedisDownFailsClosed: with Redis unreachable, completions and limits
// answer 503 with Retry-After, /v1/me keeps working, and all recover.
func TestRedisDownFailsClosed(t *testing.T) {
	var proxy *testenv.Proxy
	e := newEnv(t, func(c *config.Config) {
		hp := strings.TrimSuffix(strings.TrimPrefix(c.RedisURL, "redis://"), "/0")
		proxy = testenv.NewProxy(t, hp)
		c.RedisURL = "redis://" + proxy.Addr() + "/0"
	}, app.Deps{})
	if r := e.post("/v1/chat/completions", hello); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	proxy.Cut()
	for _, r := range []response{e.post("/v1/chat/completions", hello), e.get("/v1/limits")} {
		wantError(t, r, 503, wire.CodeUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
	}
	if r := e.get("/v1/me"); r.status != 200 {
		t.Errorf("/v1/me with Redis down: %d", r.status)
	}
	proxy.Restore()
	if r := e.post("/v1/chat/completions", hello); r.status != 200 {
		t.Errorf("after recovery: %d %s", r.status, r.body)
	}
}

// TestExactAcrossInstances: three gateways on one Redis, 150 concurrent
// completions from one user against requests_per_day 20: exactly 20 pass.
// (Token and money budgets: spend_test.go.)
func TestExactAcrossInstances(t *testing.T) {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.RequestsPerMinute, free.RequestsPerDay, free.ConcurrentRequests = 1000, 20, 0
	plans["free"] = free
	a := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	instances := []string{a.url}
	instances = append(instances, a.extraInstances(t, plans, 2)...)
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for i := range 150 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", instances[i%3]+"/v1/chat/completions", strings.NewReader(hello))
			req.Header.Set("Authorization", "Bearer "+a.tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 429:
				limited.Add(1)
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 20 || limited.Load() != 130 {
		t.Errorf("admitted %d, refused %d; want exactly 20 and 130", ok.Load(), limited.Load())
	}

}

// extraInstances starts n more gateways like e's (same Redis, issuer and
// upstream) and returns their URLs.
func (e *env) extraInstances(t *testing.T, plans quota.Plans, n int) []string {
	t.Helper()
	var urls []string
	for range n {
		gw, err := app.New(context.Background(), config.Config{Issuer: e.iss.Issuer(), Audiences: []string{aud},
			RedisURL: testenv.RedisURL(t), OpenAIAPIKey: upstreamKey, OpenAIBaseURL: e.upstreamURL(), Plans: plans, UsageStream: e.stream},
			nilLogger(), app.Deps{Store: e.store, SlotLease: e.slotLease})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(gw.Close)
		srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	return urls
}

func nilLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// hang blocks like an upstream that stopped answering, until the proxy
// hangs up (or 10 s, so a broken proxy fails the test instead of hanging it).
func hang(r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body) // lets the server see the disconnect
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// TestReviewFaults: the cases a review found unbounded or unfair.
func TestReviewFaults(t *testing.T) {
	e := newEnv(t, nil, app.Deps{UpstreamIdleTimeout: 300 * time.Millisecond})
	t.Run("non-streamed body stalls after headers: bounded, 502, charged", func(t *testing.T) {
		e.setFault(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"choices":[{"message":{"content":"par`)
			w.(http.Flusher).Flush()
			hang(r)
		})
		before := e.usage()
		start := time.Now()
		wantError(t, e.post("/v1/chat/completions", hello), 502, wire.CodeUpstreamError)
		if time.Since(start) > 5*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
		waitFor(t, "a charge", func() bool { return e.usage()[quota.TokensPerDay] > before[quota.TokensPerDay] })
	})
	t.Run("client leaves before the answer: charged, not refunded", func(t *testing.T) {
		e.setFault(func(w http.ResponseWriter, r *http.Request) { hang(r) })
		before := e.usage()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/chat/completions", strings.NewReader(hello))
		req.Header.Set("Authorization", "Bearer "+e.tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		waitFor(t, "a charge", func() bool { return e.usage()[quota.TokensPerDay] > before[quota.TokensPerDay] })
		if e.usage()[quota.RequestsPerDay] != before[quota.RequestsPerDay]+1 {
			t.Error("the request was refunded")
		}
	})
	t.Run("stream ends at [DONE] even if the upstream keeps the body open", func(t *testing.T) {
		e.setFault(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
			io.WriteString(w, "data: [DONE]\n\n")
			w.(http.Flusher).Flush()
			hang(r)
		})
		start := time.Now()
		r := e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`)
		if r.status != 200 || !strings.HasSuffix(r.body, "data: [DONE]\n\n") {
			t.Errorf("%d %q", r.status, r.body)
		}
		if d := time.Since(start); d >= 300*time.Millisecond {
			t.Errorf("the stream ended after %v: it waited for the idle timeout instead of [DONE]", d)
		}
	})
	t.Run("n above 1 is refused before the quota", func(t *testing.T) {
		before := e.usage()
		wantError(t, e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","n":8,"messages":[{"role":"user","content":"x"}]}`), 400, wire.CodeBadRequest)
		if e.usage()[quota.RequestsPerDay] != before[quota.RequestsPerDay] {
			t.Error("consumed quota")
		}
	})
	e.fault.Store(nil)
}

// TestRateHeadersDescribeTheRefusingLimit: a request refused by the daily
// token budget says so in RateLimit-* too, not the per-minute window.
func TestRateHeadersDescribeTheRefusingLimit(t *testing.T) {
	plans := quota.BuiltIn()
	free := plans["free"]
	free.TokensPerDay = 60
	plans["free"] = free
	e := newEnv(t, func(c *config.Config) { c.Plans = plans }, app.Deps{})
	body := `{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hello there"}]}`
	// Each reserves 9 prompt + 20 output tokens and uses them all (the dev
	// model's answer is longer than 20): two fit in 60, a third does not.
	for i := range 2 {
		if r := e.post("/v1/chat/completions", body); r.status != 200 {
			t.Fatalf("request %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := e.post("/v1/chat/completions", body)
	wantError(t, r, 429, wire.CodeQuotaExceeded)
	if !strings.Contains(r.body, `"limit":"tokens_per_day"`) {
		t.Errorf("error.limit missing: %s", r.body)
	}
	if r.header.Get("RateLimit-Limit") != "60" || r.header.Get("RateLimit-Remaining") != "2" || r.header.Get("RateLimit-Reset") != r.header.Get("Retry-After") {
		t.Errorf("RateLimit %s/%s reset %s, Retry-After %s", r.header.Get("RateLimit-Limit"), r.header.Get("RateLimit-Remaining"), r.header.Get("RateLimit-Reset"), r.header.Get("Retry-After"))
	}
	rec := httptest.NewRecorder()
	e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `sas_quota_rejections_total{limit="tokens_per_day",plan="free"} 1`) {
		t.Error("the quota rejection is not in /metrics")
	}
}

// TestSilentBeforeAnyByte: an upstream that answers 200 and then sends
// nothing of its body failed to serve the request: the day's request,
// tokens and money are given back, streamed or not. (Found in review: the
// whole reservation was charged.)
func TestSilentBeforeAnyByte(t *testing.T) {
	// A frozen clock: the test compares the minute's request counter, which
	// a run across a minute boundary would reset (it did, once in CI).
	clk := testenv.NewClock(time.Now())
	e := newEnv(t, nil, app.Deps{UpstreamIdleTimeout: 300 * time.Millisecond, Now: clk.Now})
	for _, stream := range []bool{true, false} {
		e.setFault(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			hang(r)
		})
		before := e.usage()
		r := e.post("/v1/chat/completions", fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":"x"}]}`, stream))
		if !stream {
			wantError(t, r, 502, wire.CodeUpstreamError)
		}
		want := maps.Clone(before)
		want[quota.RequestsPerMinute]++
		if diff := cmp.Diff(want, e.usage()); diff != "" {
			t.Errorf("stream %v: quota after a silent upstream (-want +got):\n%s", stream, diff)
		}
		if c := e.lastCompletion(); c["outcome"] != "idle_timeout" || c["usage_source"] != "none" {
			t.Errorf("stream %v: %v", stream, c)
		}
	}
}

// TestClientLeavesDuringTheAnswer: a client that leaves while a
// non-streamed answer is arriving (its headers and part of its body read)
// is charged its whole reservation, never refunded — the upstream worked
// on the request, and no usage came: outcome client_gone, and one usage
// event, of the reservation. (Leaving before the headers: TestReviewFaults.)
func TestClientLeavesDuringTheAnswer(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"half an ans`)
		w.(http.Flusher).Flush()
		hang(r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.url+"/v1/chat/completions", strings.NewReader(hello))
	req.Header.Set("Authorization", "Bearer "+e.tok)
	answered := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	// Leave once the gateway has the headers and reads the body. Nothing
	// outside the gateway shows that moment (a JSON answer reaches the
	// client whole or not at all), and leaving a moment early takes the
	// other path, so look for the relay of JSON answers among this
	// process's goroutines: the gateway runs in it.
	waitFor(t, "gateway reading the answer's body", func() bool { return running("llmproxy.relayJSON") })
	cancel()
	if err := <-answered; err == nil {
		t.Fatal("the client that left was answered")
	}
	waitFor(t, "settlement", func() bool { return strings.Contains(e.logs.String(), `"msg":"completion"`) })
	c := e.lastCompletion()
	if c["outcome"] != "client_gone" || c["usage_source"] != "reservation" {
		t.Errorf("completion log: %v, want outcome client_gone charged the reservation", c)
	}
	promptEstimate, reservedTokens := int64(c["prompt_estimate"].(float64)), int64(c["reserved_tokens"].(float64))
	reservedUSD, err := quota.ParseUSD(c["reserved_usd"].(string))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{quota.RequestsPerMinute: 1, quota.RequestsPerDay: 1, quota.TokensPerDay: reservedTokens,
		quota.USDPerDay: int64(reservedUSD), quota.USDPerMonth: int64(reservedUSD)}
	if diff := cmp.Diff(want, e.usage()); diff != "" {
		t.Errorf("charged (-want +got):\n%s", diff)
	}
	// The ledger has one event, of the reservation.
	var got gateway.UsageFigures
	waitFor(t, "usage event in the ledger", func() bool {
		got = e.ledgerTotal()
		return got.Requests > 0
	})
	wantEvent := gateway.UsageFigures{Requests: 1, InputTokens: promptEstimate, OutputTokens: reservedTokens - promptEstimate, CostMicros: int64(reservedUSD)}
	if diff := cmp.Diff(wantEvent, got); diff != "" {
		t.Errorf("usage events (-want +got):\n%s", diff)
	}
}

// running reports whether a goroutine of this process is in the function
// named fn (package.Function).
func running(fn string) bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Contains(buf[:n], []byte(fn+"("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

// ledgerTotal sums the user's usage events in the store, as the ledger
// drained them (yesterday to tomorrow: a test that runs at midnight too).
func (e *env) ledgerTotal() gateway.UsageFigures {
	e.t.Helper()
	now := time.Now().UTC()
	days, err := e.store.Usage(context.Background(), e.user, now.AddDate(0, 0, -1), now.AddDate(0, 0, 1))
	if err != nil {
		e.t.Fatal(err)
	}
	var total gateway.UsageFigures
	for _, d := range days {
		for _, m := range d.Models {
			total.Add(m.UsageFigures)
		}
	}
	return total
}
