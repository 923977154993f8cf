package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/shared/wire"
)

const aud = "sas-api"

// env is a gateway assembled by app.New exactly as `sas-gateway serve`
// does, on a fresh database, real Redis and a dev issuer.
type env struct {
	t     *testing.T
	url   string
	gw    *app.Gateway
	iss   *testenv.Issuer
	clock *testenv.Clock
	logs  *testenv.SyncBuffer
	db    testenv.Database
}

func newEnv(t *testing.T, mod func(*config.Config)) *env {
	t.Helper()
	clk := testenv.NewClock(time.Now())
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	db := testenv.NewDatabase(t)
	cfg := config.Config{
		Issuer:      iss.Issuer(),
		Audiences:   []string{aud},
		DatabaseURL: db.URL,
		RedisURL:    testenv.RedisURL(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	gw, err := app.New(context.Background(), cfg, log, app.Deps{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
	t.Cleanup(srv.Close)
	return &env{t: t, url: srv.URL, gw: gw, iss: iss, clock: clk, logs: logs, db: db}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path string, header map[string]string, body io.Reader) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) me(token string) response {
	return e.do("GET", "/v1/me", map[string]string{"Authorization": "Bearer " + token}, nil)
}

func (e *env) token(sub, email, name string, extra map[string]any) string {
	return e.iss.Token(e.t, sub, aud, email, name, extra)
}

func (e *env) userCount() int {
	e.t.Helper()
	var n int
	if err := e.gw.DB.Pool().QueryRow(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// wantError checks the contract's envelope.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var body wire.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body %s is not the error envelope: %v", r.body, err)
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("error = %+v, want code %s and a message", body.Error, code)
	}
	if strings.Contains(string(r.body), "goroutine") || strings.Contains(string(r.body), ".go:") {
		t.Errorf("body leaks a stack trace: %s", r.body)
	}
}

func TestMe(t *testing.T) {
	e := newEnv(t, nil)
	r := e.me(e.token("user_abc123", "steve@example.com", "Steve", nil))
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "user_abc123", "email": "steve@example.com", "username": "Steve", "plan": "free", "status": "active"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("/v1/me (-want +got):\n%s", diff)
	}
	if id := r.header.Get("X-Request-Id"); len(id) < 16 {
		t.Errorf("X-Request-Id = %q, want a generated id", id)
	}
	// A changed profile claim reaches the database on the next call.
	r = e.me(e.token("user_abc123", "steve@new.example.com", "Steve", nil))
	if !strings.Contains(string(r.body), "steve@new.example.com") {
		t.Errorf("email not updated: %s", r.body)
	}
}

func TestAuthFailures(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.AuthorizedParties = []string{aud} })
	now := e.clock.Now().Unix()
	cases := []struct{ name, header, code string }{ // header "-": none
		{"no header", "-", wire.CodeMissingToken},
		{"Basic scheme", "Basic dXNlcjpwYXNz", wire.CodeMissingToken},
		{"empty Bearer", "Bearer ", wire.CodeMissingToken},
		{"Bearer only", "Bearer", wire.CodeMissingToken},
		{"garbage", "Bearer garbage", wire.CodeInvalidToken},
		{"expired", "Bearer " + e.token("user_x", "", "", map[string]any{"exp": now - 120}), wire.CodeInvalidToken},
		{"wrong aud", "Bearer " + e.iss.Token(t, "user_x", "other", "", "", nil), wire.CodeInvalidToken},
		{"alg none", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyX3gifQ.", wire.CodeInvalidToken},
		{"10 KB token", "Bearer " + e.token("user_x", "", "", map[string]any{"pad": strings.Repeat("x", 10<<10)}), wire.CodeInvalidToken},
	}
	for name, tok := range testenv.HostileTokens(t, e.iss, aud).Tokens {
		cases = append(cases, struct{ name, header, code string }{"hostile: " + name, "Bearer " + tok, wire.CodeInvalidToken})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.header != "-" {
				h["Authorization"] = tc.header
			}
			r := e.do("GET", "/v1/me", h, nil)
			wantError(t, r, 401, tc.code)
			want := `Bearer realm="sas"`
			if tc.code == wire.CodeInvalidToken {
				want = `Bearer realm="sas", error="invalid_token"`
			}
			if got := r.header.Get("WWW-Authenticate"); got != want {
				t.Errorf("WWW-Authenticate = %q, want %q", got, want)
			}
		})
	}
	if n := e.userCount(); n != 0 {
		t.Errorf("%d users rows written by refused requests", n)
	}
}

func TestRoutingErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.gw.API.Router().Get("/test/panic", func(http.ResponseWriter, *http.Request) {
		panic("boom: secret-detail")
	})
	t.Run("404", func(t *testing.T) { wantError(t, e.do("GET", "/nope", nil, nil), 404, wire.CodeNotFound) })
	t.Run("404 under /v1", func(t *testing.T) { wantError(t, e.do("GET", "/v1/nope", nil, nil), 401, wire.CodeMissingToken) })
	t.Run("405", func(t *testing.T) {
		r := e.do("POST", "/healthz", nil, nil)
		wantError(t, r, 405, wire.CodeMethodNotAllowed)
		if got := r.header.Get("Allow"); got != "GET" {
			t.Errorf("Allow = %q, want GET", got)
		}
	})
	t.Run("413", func(t *testing.T) {
		r := e.do("POST", "/v1/me", nil, bytes.NewReader(make([]byte, 1<<20+1)))
		wantError(t, r, 413, wire.CodePayloadTooLarge)
	})
	t.Run("panic", func(t *testing.T) {
		r := e.do("GET", "/test/panic", nil, nil)
		wantError(t, r, 500, wire.CodeInternal)
		if strings.Contains(string(r.body), "secret-detail") {
			t.Errorf("panic value reached the client: %s", r.body)
		}
		if !strings.Contains(e.logs.String(), "secret-detail") {
			t.Error("panic not logged")
		}
	})
	t.Run("healthz", func(t *testing.T) {
		r := e.do("GET", "/healthz", nil, nil)
		if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
			t.Errorf("healthz = %d %s", r.status, r.body)
		}
	})
}

func TestRequestID(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ sent, want string }{
		{"abc-123", "abc-123"},
		{strings.Repeat("a", 129), ""},
		{`bad"id`, ""},
		{"has space", ""},
	} {
		r := e.do("GET", "/healthz", map[string]string{"X-Request-Id": tc.sent}, nil)
		got := r.header.Get("X-Request-Id")
		if tc.want != "" && got != tc.want {
			t.Errorf("sent %q: got %q, want it echoed", tc.sent, got)
		}
		if tc.want == "" && (got == tc.sent || got == "") {
			t.Errorf("sent %q: got %q, want a fresh id", tc.sent, got)
		}
	}
	// Error answers carry it too, and the log line names it.
	r := e.do("GET", "/nope", map[string]string{"X-Request-Id": "trace-42"}, nil)
	if r.header.Get("X-Request-Id") != "trace-42" || !strings.Contains(e.logs.String(), `"request_id":"trace-42"`) {
		t.Errorf("request id missing from 404 answer or log")
	}
}

func TestReadyz(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/readyz", nil, nil)
	if r.status != 200 || strings.TrimSpace(string(r.body)) != `{"status":"ok","checks":{"postgres":"ok","redis":"ok"}}` {
		t.Fatalf("readyz = %d %s", r.status, r.body)
	}

	down := newEnv(t, func(c *config.Config) { c.RedisURL = "redis://:hunter2@127.0.0.1:9/0" })
	start := time.Now()
	r = down.do("GET", "/readyz", nil, nil)
	if time.Since(start) > 3*time.Second {
		t.Errorf("readyz took %v with Redis down", time.Since(start))
	}
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("readyz = %d (Retry-After %q) %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	var body wire.Health
	_ = json.Unmarshal(r.body, &body)
	if body.Status != "unavailable" || body.Checks["postgres"] != "ok" || body.Checks["redis"] != "connection refused" {
		t.Errorf("readyz body = %s", r.body)
	}
	if strings.Contains(string(r.body), "hunter2") || strings.Contains(down.logs.String(), "hunter2") {
		t.Error("Redis password leaked")
	}
	// /v1/me does not depend on Redis.
	if r := down.me(down.token("user_1", "", "", nil)); r.status != 200 {
		t.Errorf("/v1/me with Redis down = %d %s", r.status, r.body)
	}
}

// TestSuspension: a status change in the database takes effect within the
// cache TTL, on every route under /v1.
func TestSuspension(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token("user_s", "s@example.com", "S", nil)
	if r := e.me(tok); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	if _, err := e.gw.DB.SetStatus(context.Background(), "user_s", "suspended"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Second) // the cache TTL: no instance serves the old row past it
	wantError(t, e.me(tok), 403, wire.CodeAccountSuspended)
	wantError(t, e.do("GET", "/v1/anything", map[string]string{"Authorization": "Bearer " + tok}, nil), 403, wire.CodeAccountSuspended)
	if _, err := e.gw.DB.SetStatus(context.Background(), "user_s", "active"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(5 * time.Second)
	if r := e.me(tok); r.status != 200 {
		t.Errorf("reactivated: status %d", r.status)
	}
}

// TestPostgresDown: with the database unreachable, /v1/me answers 503
// unavailable with Retry-After quickly, and recovers without a restart.
func TestPostgresDown(t *testing.T) {
	var proxy *testenv.Proxy
	e := newEnv(t, func(c *config.Config) {
		hp := strings.SplitN(strings.SplitN(c.DatabaseURL, "@", 2)[1], "/", 2)[0]
		proxy = testenv.NewProxy(t, hp)
		c.DatabaseURL = strings.Replace(c.DatabaseURL, hp, proxy.Addr(), 1)
	})
	if r := e.me(e.token("user_1", "", "", nil)); r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	proxy.Cut()
	start := time.Now()
	r := e.me(e.token("user_2", "", "", nil)) // not cached
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v, want < 2s", took)
	}
	wantError(t, r, 503, wire.CodeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if r := e.do("GET", "/healthz", nil, nil); r.status != 200 {
		t.Errorf("healthz = %d while Postgres is down", r.status)
	}
	if r := e.do("GET", "/readyz", nil, nil); r.status != 503 {
		t.Errorf("readyz = %d while Postgres is down", r.status)
	}
	proxy.Restore()
	// Recovers without a restart: each pooled connection the cut killed
	// fails once (503) and is dropped; the pool holds a few (the change
	// feed and the templates' reload use it too), so allow a few tries.
	var last response
	for range 10 {
		if last = e.me(e.token("user_2", "", "", nil)); last.status == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("after recovery: %d %s", last.status, last.body)
}

func TestIssuerDown(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.JWKSURL = "http://127.0.0.1:9/jwks.json" })
	r := e.me(e.token("user_1", "", "", nil))
	wantError(t, r, 503, wire.CodeUnavailable)
}

// TestConcurrentFirstCalls: 100 concurrent first calls of one new user all
// succeed and make one row.
func TestConcurrentFirstCalls(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token("user_new", "new@example.com", "New", nil)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if r := e.me(tok); r.status != 200 {
				t.Errorf("status %d: %s", r.status, r.body)
			}
		})
	}
	wg.Wait()
	if n := e.userCount(); n != 1 {
		t.Errorf("%d rows, want 1", n)
	}
}

// TestNoTokenInLogs: at debug level, after good and bad requests, no token
// appears in any log line.
func TestNoTokenInLogs(t *testing.T) {
	e := newEnv(t, func(c *config.Config) {
		c.DatabaseURL = strings.Replace(c.DatabaseURL, "postgres://postgres@", "postgres://postgres:pg-s3cret@", 1)
	})
	good := e.token("user_1", "a@example.com", "A", nil)
	expired := e.token("user_1", "", "", map[string]any{"exp": e.clock.Now().Unix() - 600})
	forged := good[:len(good)-10] + "AAAAAAAAAA"
	for _, tok := range []string{good, expired, forged, "Zm9v.YmFy.YmF6"} {
		e.me(tok)
		e.do("GET", "/v1/me?access_token="+tok, nil, nil)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "invalid_token") {
		t.Fatal("the debug log does not record refusals; this test would prove nothing")
	}
	for _, tok := range []string{good, expired, forged, "Zm9v.YmFy.YmF6"} {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 8 && strings.Contains(logs, part) {
				t.Errorf("a token part appears in the logs: %.20s…", part)
			}
		}
	}
	if strings.Contains(logs, "pg-s3cret") {
		t.Error("database password in the logs")
	}
}

// BenchmarkMe measures the /v1/me handler in process (no network) against
// real PostgreSQL, with the user cache as deployed and without it.
func BenchmarkMe(b *testing.B) {
	for _, bc := range []struct {
		name string
		deps app.Deps
	}{{"cached", app.Deps{}}, {"uncached", app.Deps{NoUserCache: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			iss := testenv.NewIssuer(b, "RS256", nil)
			db := testenv.NewDatabase(b)
			cfg := config.Config{Issuer: iss.Issuer(), Audiences: []string{aud}, DatabaseURL: db.URL, RedisURL: testenv.RedisURL(b)}
			gw, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler), bc.deps)
			if err != nil {
				b.Fatal(err)
			}
			defer gw.Close()
			req := httptest.NewRequest("GET", "/v1/me", nil)
			req.Header.Set("Authorization", "Bearer "+iss.Token(b, "user_1", aud, "a@example.com", "A", nil))
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				gw.Handler.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// TestMetricsMove: the counters behind /metrics move with the traffic.
func TestMetricsMove(t *testing.T) {
	e := newEnv(t, nil)
	scrape := func() string {
		rec := httptest.NewRecorder()
		e.gw.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		return rec.Body.String()
	}
	e.me(e.token("user_m", "m@example.com", "M", nil))
	e.me(e.token("user_m", "m@example.com", "M", map[string]any{"exp": e.clock.Now().Unix() - 600}))
	e.do("GET", "/v1/me", nil, nil)
	got := scrape()
	for _, want := range []string{
		`sas_http_requests_total{method="GET",route="/v1/me",status="200"} 1`,
		`sas_http_requests_total{method="GET",route="/v1/*",status="401"} 2`,
		`sas_token_rejections_total{reason="expired"} 1`,
		`sas_token_rejections_total{reason="missing"} 1`,
		`sas_http_request_duration_seconds_count{route="/v1/me"} 1`,
		`go_goroutines`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	e.me(e.token("user_m", "m@example.com", "M", nil))
	if !strings.Contains(scrape(), `sas_http_requests_total{method="GET",route="/v1/me",status="200"} 2`) {
		t.Error("the request counter did not move")
	}
}

// driftTB records what the OpenAPI check reports instead of failing.
type driftTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (d *driftTB) Errorf(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.errors = append(d.errors, fmt.Sprintf(format, args...))
}

// TestOpenAPICatchesDrift: a /v1/me answer whose shape changed (a field
// added, a field's type changed, an undeclared status) fails the check, and
// the real one passes.
func TestOpenAPICatchesDrift(t *testing.T) {
	for name, tc := range map[string]struct {
		status int
		body   string
		drift  bool
	}{
		"as specified":       {200, `{"id":"u","email":"e","username":"n","plan":"free","status":"active"}`, false},
		"field added":        {200, `{"id":"u","email":"e","username":"n","plan":"free","status":"active","role":"admin"}`, true},
		"field retyped":      {200, `{"id":1,"email":"e","username":"n","plan":"free","status":"active"}`, true},
		"unknown plan":       {200, `{"id":"u","email":"e","username":"n","plan":"gold","status":"active"}`, true},
		"error not envelope": {500, `{"message":"boom"}`, true},
	} {
		t.Run(name, func(t *testing.T) {
			tb := &driftTB{TB: t}
			h := testenv.OpenAPI(tb, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/me", nil))
			if got := len(tb.errors) > 0; got != tc.drift {
				t.Errorf("drift reported = %v (%v), want %v", got, tb.errors, tc.drift)
			}
		})
	}
	e := newEnv(t, nil)
	if r := e.do("GET", "/openapi.yaml", nil, nil); r.status != 200 || !strings.HasPrefix(string(r.body), "openapi: 3.1.0") {
		t.Errorf("/openapi.yaml = %d", r.status)
	}
}

// TestSentry: with SENTRY_DSN, a panic reaches Sentry (here a server that
// speaks its envelope protocol) with the request id and the user id, and
// nothing else of the request; client errors send nothing.
func TestSentry(t *testing.T) {
	var mu sync.Mutex
	var envelopes []string
	sentrySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		envelopes = append(envelopes, r.URL.Path+"\n"+string(b))
		mu.Unlock()
		w.WriteHeader(200)
	}))
	defer sentrySrv.Close()
	dsn := "http://publickey@" + strings.TrimPrefix(sentrySrv.URL, "http://") + "/42"
	e := newEnv(t, func(c *config.Config) { c.SentryDSN = dsn })
	tok := e.token("user_sentry", "s@example.com", "S", nil)
	e.gw.API.Router().With(func(next http.Handler) http.Handler { return next }).Get("/v1/boom", func(http.ResponseWriter, *http.Request) {
		panic("boom")
	})
	e.me("not-a-token") // 401: nothing to report
	r := e.do("GET", "/v1/boom", map[string]string{"Authorization": "Bearer " + tok, "X-Request-Id": "req-sentry-1"}, nil)
	if r.status != 500 {
		t.Fatalf("status %d", r.status)
	}
	if !e.gw.Errors.FlushOK(5 * time.Second) {
		t.Log("flush timed out")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(envelopes) != 1 {
		t.Fatalf("%d envelopes, want 1 (the panic only)", len(envelopes))
	}
	got := envelopes[0]
	for _, want := range []string{"/api/42/envelope/", "req-sentry-1", "user_sentry", "boom"} {
		if !strings.Contains(got, want) {
			t.Errorf("envelope lacks %q:\n%.600s", want, got)
		}
	}
	for _, secret := range strings.Split(tok, ".") {
		if strings.Contains(got, secret) {
			t.Error("the token reached Sentry")
		}
	}
}
