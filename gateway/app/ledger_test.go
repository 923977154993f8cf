package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
)

// stack is gateways sharing one Redis, one Postgres (through PgBouncer, or
// a cuttable proxy in front of it) and one usage stream, in front of the
// dev model.
type stack struct {
	t     *testing.T
	iss   *testenv.Issuer
	cfg   config.Config
	urls  []string
	gws   []*app.Gateway
	check *pgxpool.Pool // the database without the proxy
}

func newStack(t *testing.T, instances int, dbURL, direct string) *stack {
	t.Helper()
	model := devllm.New(devllm.Options{APIKey: "sk-test", ChunkDelay: -1})
	up := httptest.NewServer(model.Handler())
	t.Cleanup(up.Close)
	var b [6]byte
	_, _ = rand.Read(b[:])
	plans := quota.BuiltIn()
	for name, p := range plans {
		p.RequestsPerMinute, p.RequestsPerDay, p.ConcurrentRequests = 100_000, 100_000, 0
		p.TokensPerDay, p.USDPerDay, p.USDPerMonth = 1<<40, 1_000*quota.MicrosPerUSD, 1_000*quota.MicrosPerUSD
		plans[name] = p
	}
	check, err := pgxpool.New(context.Background(), direct)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(check.Close)
	s := &stack{t: t, iss: testenv.NewIssuer(t, "RS256", nil), check: check}
	s.cfg = config.Config{Issuer: s.iss.Issuer(), Audiences: []string{"sas-api"}, DatabaseURL: dbURL, RedisURL: testenv.RedisURL(t),
		OpenAIAPIKey: "sk-test", OpenAIBaseURL: up.URL + "/v1", Plans: plans, UsageStream: "sas:usage:test:" + hex.EncodeToString(b[:])}
	for range instances {
		s.add(app.Deps{})
	}
	return s
}

func (s *stack) add(deps app.Deps) {
	s.t.Helper()
	gw, err := app.New(context.Background(), s.cfg, slog.New(slog.DiscardHandler), deps)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(gw.Close)
	srv := httptest.NewServer(testenv.OpenAPI(s.t, gw.Handler))
	s.t.Cleanup(srv.Close)
	s.urls = append(s.urls, srv.URL)
	s.gws = append(s.gws, gw)
}

func (s *stack) token(user string) string {
	return s.iss.Token(s.t, user, "sas-api", user+"@example.com", user, nil)
}

func call(t *testing.T, method, url, tok, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type usageTotal struct {
	Requests          int64   `json:"requests"`
	InputTokens       int64   `json:"input_tokens"`
	CachedInputTokens int64   `json:"cached_input_tokens"`
	OutputTokens      int64   `json:"output_tokens"`
	USD               float64 `json:"usd"`
}

// usageReport is GET /v1/usage's answer.
type usageReport struct {
	From, To string
	Days     []struct {
		Date string
		usageTotal
		Models []struct {
			Model string
			usageTotal
		}
	}
	Total usageTotal
}

func (s *stack) usage(url, tok, query string) (int, usageReport) {
	s.t.Helper()
	status, body := call(s.t, "GET", url+"/v1/usage"+query, tok, "")
	var rep usageReport
	if status == 200 {
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			s.t.Fatalf("/v1/usage: %v: %s", err, body)
		}
	}
	return status, rep
}

func (s *stack) events(user string) int {
	s.t.Helper()
	var n int
	if err := s.check.QueryRow(context.Background(), "SELECT count(DISTINCT event_id) FROM usage_events WHERE clerk_user_id = $1", user).Scan(&n); err != nil {
		s.t.Fatal(err)
	}
	return n
}

// TestLedgerAcrossInstances: N requests (chat completions and the
// Responses API, streamed and not) over three instances become exactly N
// events, each naming its endpoint, whose sums equal the Redis day counters
// and GET /v1/usage within 10 s; a user sees only their own.
func TestLedgerAcrossInstances(t *testing.T) {
	d := testenv.NewDatabase(t)
	s := newStack(t, 3, d.PoolerURL, d.URL)
	alice, bob := "user_alice_"+s.cfg.UsageStream[len(s.cfg.UsageStream)-12:], "user_bob_"+s.cfg.UsageStream[len(s.cfg.UsageStream)-12:]
	tok := s.token(alice)
	const n = 36
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			path, body := "/v1/chat/completions", fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":"request number %d"}]}`, i%2 == 0, i)
			if i%4 >= 2 {
				path, body = "/v1/responses", fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"instructions":"be brief","input":"request number %d"}`, i%2 == 0, i)
			}
			if status, resp := call(t, "POST", s.urls[i%3]+path, tok, body); status != 200 {
				t.Errorf("%d %s", status, resp)
			}
		})
	}
	wg.Wait()
	start := time.Now()
	testenv.WaitFor(t, "every event in /v1/usage", 10*time.Second, func() bool {
		_, rep := s.usage(s.urls[1], tok, "")
		return rep.Total.Requests == n
	})
	t.Logf("all %d events visible %v after the last answer", n, time.Since(start).Round(time.Millisecond))
	if got := s.events(alice); got != n {
		t.Errorf("%d events in the ledger, want %d", got, n)
	}
	var chat, responses int
	if err := s.check.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE endpoint = 'chat.completions'),
		count(*) FILTER (WHERE endpoint = 'responses') FROM usage_events WHERE clerk_user_id = $1`, alice).Scan(&chat, &responses); err != nil {
		t.Fatal(err)
	}
	if chat != n/2 || responses != n/2 {
		t.Errorf("events by endpoint: chat.completions %d, responses %d; want %d each", chat, responses, n/2)
	}
	used := map[string]int64{}
	us, err := s.gws[0].Limiter.Peek(context.Background(), alice, s.cfg.Plans["free"])
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range us {
		used[u.Name] = u.Limit - u.Remaining
	}
	_, rep := s.usage(s.urls[2], tok, "")
	if rep.Total.InputTokens+rep.Total.OutputTokens != used[quota.TokensPerDay] || rep.Total.Requests != used[quota.RequestsPerDay] ||
		int64(rep.Total.USD*1e6+0.5) != used[quota.USDPerDay] {
		t.Errorf("/v1/usage total %+v; Redis counters %v", rep.Total, used)
	}
	if len(rep.Days) != 1 || len(rep.Days[0].Models) != 1 || rep.Days[0].Models[0].Model != "gpt-4o-mini" || rep.Days[0].Requests != n {
		t.Errorf("days: %+v", rep.Days)
	}
	// Bob sees none of it.
	if status, other := s.usage(s.urls[0], s.token(bob), ""); status != 200 || other.Total.Requests != 0 || len(other.Days) != 0 {
		t.Errorf("another user's /v1/usage: %d %+v", status, other)
	}
	// Ranges.
	today := time.Now().UTC().Format(time.DateOnly)
	for query, want := range map[string]int{
		"?from=" + today + "&to=" + today: 200,
		"?from=2026-13-01":                400,
		"?from=yesterday":                 400,
		"?to=2020-01-01&from=2020-01-02":  400,
		"?from=2024-01-01&to=2025-01-02":  400, // 368 days
		"?from=2024-01-01&to=2024-12-31":  200, // 366 days
	} {
		if status, _ := call(t, "GET", s.urls[0]+"/v1/usage"+query, tok, ""); status != want {
			t.Errorf("/v1/usage%s = %d, want %d", query, status, want)
		}
	}
}

// TestLedgerThroughPostgresOutage: Postgres is unreachable for 30 s while
// requests keep flowing. Known users are served from the user cache
// (stale if error), every request answered 200 has its event once Postgres
// is back, and none is recorded twice.
func TestLedgerThroughPostgresOutage(t *testing.T) {
	d := testenv.NewDatabase(t)
	proxy, viaProxy := testenv.ProxyURL(t, d.PoolerURL)
	s := newStack(t, 1, viaProxy, d.URL)
	user := "user_outage_" + s.cfg.UsageStream[len(s.cfg.UsageStream)-12:]
	tok := s.token(user)
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"during the outage"}]}`
	if status, resp := call(t, "POST", s.urls[0]+"/v1/chat/completions", tok, body); status != 200 {
		t.Fatalf("%d %s", status, resp)
	}
	proxy.Cut()
	ok := 1
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		status, resp := call(t, "POST", s.urls[0]+"/v1/chat/completions", tok, body)
		if status != 200 {
			t.Fatalf("during the outage: %d %s", status, resp)
		}
		ok++
	}
	if status, _ := call(t, "GET", s.urls[0]+"/readyz", "", ""); status != 503 {
		t.Errorf("/readyz during the outage = %d, want 503", status)
	}
	proxy.Restore()
	testenv.WaitFor(t, "every event after the outage", 20*time.Second, func() bool { return s.events(user) == ok })
	_, rep := s.usage(s.urls[0], tok, "")
	if rep.Total.Requests != int64(ok) {
		t.Errorf("/v1/usage counts %d requests, want %d", rep.Total.Requests, ok)
	}
}
