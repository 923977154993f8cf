package llmproxy_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
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
	"github.com/signals-sorcery/sas/gateway/memstore"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

const aud = "sas-api"

// env is a gateway assembled by app.New (real Redis, dev issuer) in front
// of the dev model as "OpenAI", whose handler a test can replace with a
// misbehaving one.
type env struct {
	t     *testing.T
	url   string
	gw    *app.Gateway
	iss   *testenv.Issuer
	model *devllm.Model
	fault atomic.Pointer[http.HandlerFunc]
	user  string
	tok   string
	logs  *testenv.SyncBuffer
	store *memstore.Store
	plans quota.Plans
	up    string // the upstream's base URL (…/v1)
	// slotLease of every instance (0: the default)
	slotLease time.Duration
	// stream is the usage stream of every instance: its own, so that no
	// other test's gateway drains it
	stream string
}

func (e *env) upstreamURL() string { return e.up }

const upstreamKey = "sk-upstream-test"

func newEnv(t *testing.T, mod func(*config.Config), deps app.Deps) *env {
	t.Helper()
	e := &env{t: t, model: devllm.New(devllm.Options{APIKey: upstreamKey, ChunkDelay: -1}), logs: &testenv.SyncBuffer{}}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := e.fault.Load(); f != nil {
			(*f)(w, r)
			return
		}
		e.model.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	e.iss = testenv.NewIssuer(t, "RS256", nil)
	var b [6]byte
	_, _ = rand.Read(b[:])
	cfg := config.Config{
		Issuer: e.iss.Issuer(), Audiences: []string{aud}, RedisURL: testenv.RedisURL(t),
		OpenAIAPIKey: upstreamKey, OpenAIBaseURL: up.URL + "/v1", Plans: quota.BuiltIn(),
		UsageStream: "sas:usage:test:" + hex.EncodeToString(b[:]),
	}
	if mod != nil {
		mod(&cfg)
	}
	e.plans, e.up, e.stream = cfg.Plans, cfg.OpenAIBaseURL, cfg.UsageStream
	e.store = memstore.New(nil)
	deps.Store = e.store
	if deps.Templates == nil {
		deps.Templates = testTemplates()
	}
	e.slotLease = deps.SlotLease
	gw, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", e.logs)
		}
	})
	e.url, e.gw = srv.URL, gw
	_, _ = rand.Read(b[:])
	e.user = "user_" + hex.EncodeToString(b[:])
	e.tok = e.iss.Token(t, e.user, aud, "u@example.com", "U", nil)
	return e
}

func (e *env) setFault(f http.HandlerFunc) { e.fault.Store(&f) }

// setPlan moves the user to plan, at once on every instance's cache.
func (e *env) setPlan(t *testing.T, plan string) {
	t.Helper()
	e.get("/v1/me") // the user exists from the first call on
	if _, err := e.store.SetPlan(context.Background(), e.user, plan); err != nil {
		t.Fatal(err)
	}
	e.gw.Users.Forget(e.user)
}

type response struct {
	status int
	header http.Header
	body   string
}

func (e *env) post(path, body string) response {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.tok)
	req.Header.Set("Content-Type", "application/json")
	return e.do(req)
}

func (e *env) get(path string) response {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.tok)
	return e.do(req)
}

func (e *env) do(req *http.Request) response {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

// usage reads what the user has used of each limit (money in µ$), the way
// /v1/limits does.
func (e *env) usage() map[string]int64 {
	e.t.Helper()
	u, err := e.store.UpsertUser(context.Background(), gateway.Identity{Subject: e.user})
	if err != nil {
		e.t.Fatal(err)
	}
	us, err := e.gw.Limiter.Peek(context.Background(), e.user, e.plans[u.Plan])
	if err != nil {
		e.t.Fatal(err)
	}
	used := map[string]int64{}
	for _, u := range us {
		used[u.Name] = u.Limit - u.Remaining
	}
	return used
}

// lastCompletion is the last "completion" log line of the proxy: the
// outcome, the reservation and the charge of a request.
func (e *env) lastCompletion() map[string]any {
	e.t.Helper()
	var last map[string]any
	for line := range strings.SplitSeq(e.logs.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "completion" {
			last = m
		}
	}
	if last == nil {
		e.t.Fatal("no completion logged")
	}
	return last
}

func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	var body wire.ErrorBody
	if r.status != status || json.Unmarshal([]byte(r.body), &body) != nil || body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("got %d %s, want %d %s", r.status, r.body, status, code)
	}
}

const hello = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}`

func TestCompletionForwardsAndCharges(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":99999,
		"tools":[{"type":"function","function":{"name":"play","parameters":{"type":"object"}}}],
		"response_format":{"type":"text"},"x_future_field":{"kept":true}}`
	r := e.post("/v1/chat/completions", body)
	if r.status != 200 || !strings.Contains(r.body, `"chat.completion"`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
	for _, h := range []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} {
		if r.header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if r.header.Get("RateLimit-Limit") != "10" || r.header.Get("RateLimit-Remaining") != "9" {
		t.Errorf("RateLimit = %s/%s, want the per-minute limit 10/9", r.header.Get("RateLimit-Limit"), r.header.Get("RateLimit-Remaining"))
	}
	last := e.model.Last()
	if got := last.Header.Get("Authorization"); got != "Bearer "+upstreamKey {
		t.Errorf("upstream Authorization = %q, want the gateway's key", got)
	}
	if strings.Contains(string(last.Body), e.tok) || strings.Contains(last.Header.Get("Authorization"), e.tok) {
		t.Error("the user's token reached the upstream")
	}
	var sent map[string]json.RawMessage
	_ = json.Unmarshal(last.Body, &sent)
	for _, f := range []string{"tools", "response_format", "x_future_field"} {
		if sent[f] == nil {
			t.Errorf("field %s was not forwarded", f)
		}
	}
	if string(sent["max_tokens"]) != "1024" {
		t.Errorf("max_tokens sent upstream = %s, want the plan cap 1024", sent["max_tokens"])
	}
	var resp struct {
		Usage struct {
			TotalTokens int64 `json:"total_tokens"`
		} `json:"usage"`
	}
	_ = json.Unmarshal([]byte(r.body), &resp)
	if u := e.usage(); u[quota.TokensPerDay] != resp.Usage.TotalTokens || u[quota.RequestsPerDay] != 1 {
		t.Errorf("charged %v, want %d tokens and 1 request", u, resp.Usage.TotalTokens)
	}
	if strings.Contains(e.logs.String(), upstreamKey) || strings.Contains(e.logs.String(), e.tok) {
		t.Error("a key or token in the logs")
	}
	rec := httptest.NewRecorder()
	e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`sas_upstream_tokens_total{model="gpt-4o-mini",source="upstream"}`, `sas_upstream_duration_seconds_count{model="gpt-4o-mini",outcome="complete"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// No cap asked for: the plan's is added.
	e.post("/v1/chat/completions", hello)
	_ = json.Unmarshal(e.model.Last().Body, &sent)
	if string(sent["max_completion_tokens"]) != "1024" {
		t.Errorf("max_completion_tokens = %s, want 1024", sent["max_completion_tokens"])
	}
}

// TestRefusalsConsumeNothing: 400, 403, 413 answer before the upstream and
// the quota.
func TestRefusalsConsumeNothing(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	wantError(t, e.post("/v1/chat/completions", `{"model":`), 400, wire.CodeBadRequest)
	wantError(t, e.post("/v1/chat/completions", `{"model":"gpt-4o-mini"}`), 400, wire.CodeBadRequest)
	wantError(t, e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"max_tokens":-1}`), 400, wire.CodeBadRequest)
	wantError(t, e.post("/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`), 403, wire.CodeModelNotAllowed)
	wantError(t, e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+strings.Repeat("x", 1<<20)+`"}]}`), 413, wire.CodePayloadTooLarge)
	if u := e.usage(); u[quota.RequestsPerMinute] != 0 || u[quota.RequestsPerDay] != 0 {
		t.Errorf("refusals consumed %v", u)
	}
	if e.model.Last().Body != nil {
		t.Error("a refused request reached the upstream")
	}
	// Pro may use gpt-4o.
	e.setPlan(t, "pro")
	if r := e.post("/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`); r.status != 200 {
		t.Errorf("pro with gpt-4o: %d %s", r.status, r.body)
	}
}

func TestLimitsAndModels(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	e.post("/v1/chat/completions", hello)
	r := e.get("/v1/limits")
	var lim struct {
		Plan   string
		Limits []struct {
			Name             string
			Limit, Remaining float64
			ResetAt          time.Time `json:"reset_at"`
		}
	}
	if err := json.Unmarshal([]byte(r.body), &lim); err != nil || r.status != 200 || lim.Plan != "free" || len(lim.Limits) != 5 {
		t.Fatalf("limits: %d %s", r.status, r.body)
	}
	names := []string{quota.RequestsPerMinute, quota.RequestsPerDay, quota.TokensPerDay, quota.USDPerDay, quota.USDPerMonth}
	for i, l := range lim.Limits {
		if l.Name != names[i] || l.ResetAt.IsZero() || l.Remaining >= l.Limit {
			t.Errorf("limit %d = %+v", i, l)
		}
	}
	// Reading never consumes.
	for range 5 {
		e.get("/v1/limits")
	}
	if u := e.usage(); u[quota.RequestsPerDay] != 1 {
		t.Errorf("reads consumed: %v", u)
	}
	r = e.get("/v1/models")
	if r.status != 200 || strings.TrimSpace(r.body) != `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1715367049,"owned_by":"openai"}]}` {
		t.Errorf("models: %d %s", r.status, r.body)
	}
}

func TestNotConfigured(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.OpenAIAPIKey = "" }, app.Deps{})
	wantError(t, e.get("/v1/models"), 503, wire.CodeUnavailable)
	r := e.post("/v1/chat/completions", hello)
	wantError(t, r, 503, wire.CodeUnavailable)
	if !strings.Contains(r.body, "not configured") {
		t.Errorf("message: %s", r.body)
	}
	if r := e.get("/v1/me"); r.status != 200 {
		t.Errorf("/v1/me: %d", r.status)
	}
}

// TestStreamRelaysChunkByChunk: the first chunk reaches the client while
// the upstream is still holding the rest back.
func TestStreamRelaysChunkByChunk(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	release := make(chan struct{})
	e.setFault(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"first"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" second"}}]}`+"\n\n")
		io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
	})
	req, _ := http.NewRequest("POST", e.url+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	req.Header.Set("Authorization", "Bearer "+e.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.Contains(first, "first") {
		t.Fatalf("first line %q, %v", first, err)
	}
	close(release) // only now does the upstream go on
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "second") || !strings.Contains(string(rest), "[DONE]") {
		t.Errorf("rest: %s", rest)
	}
	// The client did not ask for usage: the usage-only chunk is not passed on.
	if strings.Contains(string(rest), `"usage"`) {
		t.Errorf("usage chunk passed to a client that did not ask: %s", rest)
	}
	waitCharged(t, e, 5)
	if !strings.Contains(e.logs.String(), `"usage_source":"upstream"`) {
		t.Error("no usage_source=upstream log field")
	}
}

// waitCharged waits until the tokens charged reach want (the charge happens
// after the response is complete, as the handler returns).
func waitCharged(t *testing.T, e *env, want int64) {
	t.Helper()
	waitFor(t, "the charge", func() bool { return e.usage()[quota.TokensPerDay] == want })
}

// waitFor waits up to 2 s for cond: charges land just after the response.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 2*time.Second, cond)
}

func TestStreamWithDevModelAndUsageRequested(t *testing.T) {
	e := newEnv(t, nil, app.Deps{})
	r := e.post("/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hello"}]}`)
	if r.status != 200 || !strings.Contains(r.body, "data: [DONE]") || strings.Count(r.body, "data: ") < 5 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if !strings.Contains(r.body, `"total_tokens"`) {
		t.Error("usage chunk missing for a client that asked for it")
	}
	var sent struct {
		StreamOptions map[string]bool `json:"stream_options"`
	}
	_ = json.Unmarshal(e.model.Last().Body, &sent)
	if !sent.StreamOptions["include_usage"] {
		t.Error("include_usage not forced upstream")
	}
}
