package main_test

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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devllm"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

// TestLedgerSurvivesKillAndDrain: an instance killed with SIGKILL right
// after answering loses no usage event (another instance claims them); an
// instance stopped with SIGTERM records what it settled before it exits;
// `sas-gateway usage --json` agrees with GET /v1/usage.
func TestLedgerSurvivesKillAndDrain(t *testing.T) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	stream, user := "sas:usage:test:"+suffix, "user_ledger_"+suffix
	model := devllm.New(devllm.Options{APIKey: "sk-test", ChunkDelay: -1})
	upstream := httptest.NewServer(model.Handler())
	defer upstream.Close()
	plans := filepath.Join(t.TempDir(), "plans.json")
	plan := `{"requests_per_minute":100000,"requests_per_day":100000,"tokens_per_day":100000000,"max_tokens":100,"models":["gpt-4o-mini"]}`
	if err := os.WriteFile(plans, []byte(`{"free":`+plan+`,"pro":`+plan+`}`), 0o600); err != nil {
		t.Fatal(err)
	}
	iss := testenv.NewIssuer(t, "RS256", nil)
	d := testenv.NewDatabase(t)
	tok := iss.Token(t, user, "sas-api", "l@example.com", "L", nil)
	envOf := func(port string) []string {
		return []string{
			"PATH=" + os.Getenv("PATH"), "HOST=127.0.0.1", "PORT=" + port, "METRICS_ADDR=127.0.0.1:0",
			"CLERK_ISSUER=" + iss.Issuer(), "CLERK_AUDIENCE=sas-api", "DATABASE_URL=" + d.PoolerURL, "REDIS_URL=" + testenv.RedisURL(t),
			"OPENAI_API_KEY=sk-test", "OPENAI_BASE_URL=" + upstream.URL + "/v1", "SAS_PLANS_FILE=" + plans, "SAS_USAGE_STREAM=" + stream,
		}
	}
	serve := func() (*exec.Cmd, string, <-chan error) {
		port := freePort(t)
		cmd := exec.Command(binary, "serve")
		cmd.Env = envOf(port)
		_, exited := start(t, cmd)
		base := "http://127.0.0.1:" + port
		waitHealthy(t, base, exited)
		return cmd, base, exited
	}
	complete := func(base string, n int) {
		t.Helper()
		for i := range n {
			req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(
				fmt.Sprintf(`{"model":"gpt-4o-mini","stream":%v,"messages":[{"role":"user","content":"number %d"}]}`, i%2 == 0, i)))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body) // the whole answer, [DONE] included
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
	}
	pool := openPool(t, d.URL)
	events := func() int {
		var n int
		if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM usage_events WHERE clerk_user_id = $1", user).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitEvents := func(want int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for events() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d events recorded, want %d", events(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// A answers 20 requests and is killed at once.
	a, base, exited := serve()
	complete(base, 20)
	if err := a.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	// B, another instance, takes over what A left in the stream (pending
	// events after ClaimIdle; here short).
	cfg, err := config.Load(func(k string) string {
		for _, kv := range envOf("1") {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	bgw, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler), app.Deps{LedgerClaimIdle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitEvents(20, 15*time.Second)
	bgw.Close()

	// C answers 15 more and gets SIGTERM right after the last answer, with
	// no other instance running: its drain flushes them.
	c, base, exited := serve()
	complete(base, 15)
	if err := c.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if n := events(); n != 35 {
		t.Errorf("after the SIGTERM: %d events, want 35", n)
	}

	// The operator's report and the app's view agree.
	_, base, _ = serve()
	resp := run(t, map[string]string{"DATABASE_URL": d.URL}, "usage", "--json", "--user", user)
	if resp.code != 0 {
		t.Fatalf("usage --json: exit %d: %s", resp.code, resp.stderr)
	}
	var report struct {
		Users []json.RawMessage
		Total map[string]any
	}
	if err := json.Unmarshal([]byte(resp.stdout), &report); err != nil || len(report.Users) != 1 {
		t.Fatalf("usage --json printed %s (%v)", resp.stdout, err)
	}
	status, body := get(t, base+"/v1/usage", tok)
	var api struct{ Total map[string]any }
	if err := json.Unmarshal([]byte(body), &api); status != 200 || err != nil {
		t.Fatalf("/v1/usage: %d %s", status, body)
	}
	if fmt.Sprint(api.Total) != fmt.Sprint(report.Total) || api.Total["requests"] != float64(35) {
		t.Errorf("/v1/usage total %v, usage --json total %v", api.Total, report.Total)
	}
	table := run(t, map[string]string{"DATABASE_URL": d.URL}, "usage", "--since", time.Now().UTC().Format(time.DateOnly))
	if table.code != 0 || !strings.Contains(table.stdout, user) || !strings.Contains(table.stdout, "total") {
		t.Errorf("usage table: exit %d\n%s%s", table.code, table.stdout, table.stderr)
	}
	for _, args := range [][]string{{"usage", "--since", "yesterday"}, {"usage", "--since", "2026-02-01", "--until", "2026-01-01"}, {"usage", "extra"}, {"usage", "prune", "--older-than-days", "0"}} {
		if r := run(t, map[string]string{"DATABASE_URL": d.URL}, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2", args, r.code)
		}
	}
	if r := run(t, map[string]string{"DATABASE_URL": d.URL}, "usage", "prune"); r.code != 0 || !strings.Contains(r.stderr, "deleted 0 usage events") {
		t.Errorf("usage prune: exit %d, %s", r.code, r.stderr)
	}
}
