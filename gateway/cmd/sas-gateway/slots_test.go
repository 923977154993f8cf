package main_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestKilledInstanceFreesItsSlot: an instance killed with SIGKILL while a
// request holds a concurrency slot cannot free it; its lease does, within
// the contract's two minutes. The other instances are played by a limiter
// on the same Redis whose clock is moved past the lease.
func TestKilledInstanceFreesItsSlot(t *testing.T) {
	arrived := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-r.Context().Done() // holds the request until the gateway is gone
	}))
	defer upstream.Close()
	plans := filepath.Join(t.TempDir(), "plans.json")
	plan := `{"requests_per_minute":100,"requests_per_day":100,"tokens_per_day":100000,"max_tokens":100,"concurrent_requests":1,"models":["gpt-4o-mini"]}`
	if err := os.WriteFile(plans, []byte(`{"free":`+plan+`,"pro":`+plan+`}`), 0o600); err != nil {
		t.Fatal(err)
	}
	iss := testenv.NewIssuer(t, "RS256", nil)
	port := freePort(t)
	cmd := exec.Command(binary, "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOST=127.0.0.1", "PORT=" + port, "METRICS_ADDR=127.0.0.1:0",
		"CLERK_ISSUER=" + iss.Issuer(), "CLERK_AUDIENCE=sas-api",
		"DATABASE_URL=" + testenv.NewDatabase(t).PoolerURL, "REDIS_URL=" + testenv.RedisURL(t),
		"OPENAI_API_KEY=sk-test", "OPENAI_BASE_URL=" + upstream.URL + "/v1", "SAS_PLANS_FILE=" + plans,
	}
	_, exited := start(t, cmd)
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, exited)

	user := "user_killed_" + port
	tok := iss.Token(t, user, "sas-api", "k@example.com", "K", nil)
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"x"}]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup runs
		t.Fatal(err)
	}
	<-exited

	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	p, err := quota.Load(plans)
	if err != nil {
		t.Fatal(err)
	}
	admit := func(at time.Time) error {
		l := quota.NewLimiter(rdb, quota.LimiterOptions{Now: func() time.Time { return at }})
		_, err := l.Admit(context.Background(), user, p["free"], quota.Reservation{})
		return err
	}
	now := time.Now()
	if err := admit(now); wire.ErrorCode(err) != wire.CodeTooManyConcurrent {
		t.Fatalf("right after the kill: %v, want the dead instance's slot still held", err)
	}
	if err := admit(now.Add(2 * time.Minute)); err != nil {
		t.Errorf("two minutes after the kill: %v, want the slot free again", err)
	}
}
