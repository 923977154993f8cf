package devstack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devstack"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.HTTPLinger)
}

func devConfig(t *testing.T, env map[string]string) config.Config {
	t.Helper()
	cfg, err := config.LoadDev(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startStack serves the dev stack of env (nil: in memory) on 127.0.0.1
// until the test ends, and returns it with its base URL.
func startStack(t *testing.T, env map[string]string) (*devstack.Stack, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	s, err := devstack.New(context.Background(), devstack.Options{Config: devConfig(t, env), BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s.Handler
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		s.Close()
	})
	return s, base
}

// TestStack: the in-memory stack serves the gateway, the provider's
// discovery at the issuer it trusts, and the dev model, and leaves nothing
// running once closed.
func TestStack(t *testing.T) {
	s, base := startStack(t, nil)
	for path, want := range map[string]string{
		"/healthz": "",
		"/dev/idp/.well-known/openid-configuration": `"issuer":"` + base + `/dev/idp"`,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	if !strings.Contains(s.Model, base+"/dev/upstreams") || !strings.Contains(s.Users, "in memory") || !strings.Contains(s.Redis, "in-process") {
		t.Errorf("the stack says: %q, %q, %q", s.Model, s.Users, s.Redis)
	}
}

// TestDevFailover: the dev stack's two upstreams and their switch, as the
// README shows a newcomer: dev-a told to fail, a completion is served by
// dev-b; dev-a recovered, by dev-a again.
func TestDevFailover(t *testing.T) {
	s, base := startStack(t, nil)
	tok, err := s.IdP.Sign(s.IdP.Claims("user_dev_failover", config.DevAudience, "dev@example.com", "Dev"))
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	requests := func() (a, b float64) {
		t.Helper()
		_, body := call("GET", "/dev/upstreams", "")
		var st map[string]struct{ Requests float64 }
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return st["dev-a"].Requests, st["dev-b"].Requests
	}
	const chat = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	if status, body := call("POST", "/dev/upstreams/dev-a/fail", ""); status != 200 || !strings.Contains(body, `"failing":503`) {
		t.Fatalf("fail dev-a: %d %s", status, body)
	}
	if status, body := call("POST", "/v1/chat/completions", chat); status != 200 {
		t.Fatalf("with dev-a failing: %d %s", status, body)
	}
	if a, b := requests(); a != 1 || b != 1 {
		t.Errorf("dev-a %v requests, dev-b %v; want 1 each (a failover)", a, b)
	}
	call("POST", "/dev/upstreams/dev-a/recover", "")
	if status, body := call("POST", "/v1/responses", `{"model":"gpt-4o-mini","input":"hi"}`); status != 200 {
		t.Fatalf("dev-a recovered: %d %s", status, body)
	}
	if a, b := requests(); a != 2 || b != 1 {
		t.Errorf("dev-a %v requests, dev-b %v; want 2 and 1", a, b)
	}
	if status, _ := call("POST", "/dev/upstreams/dev-c/fail", ""); status != 400 {
		t.Errorf("an unknown dev upstream: %d", status)
	}
}

// TestStackFailsCleanly: a database that cannot be reached is an error
// (once a panic: the half-built stack was closed through a nil pointer),
// and what was opened before is closed.
func TestStackFailsCleanly(t *testing.T) {
	cfg := devConfig(t, map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none?sslmode=disable"})
	s, err := devstack.New(context.Background(), devstack.Options{Config: cfg, BaseURL: "http://127.0.0.1:1"})
	if err == nil || s != nil {
		t.Fatalf("New with an unreachable database: %v, %v", s, err)
	}
}

// TestDevSeedsTheExampleTemplate: `sas-gateway dev` serves its example
// template with users in memory and with DATABASE_URL (where it is stored
// in PostgreSQL: a store given to the gateway is read for templates too —
// the first version served none there).
func TestDevSeedsTheExampleTemplate(t *testing.T) {
	d := testenv.NewDatabase(t)
	for name, env := range map[string]map[string]string{
		"in memory":  nil,
		"PostgreSQL": {"DATABASE_URL": d.URL, "REDIS_URL": testenv.RedisURL(t)},
	} {
		t.Run(name, func(t *testing.T) {
			s, base := startStack(t, env)
			tok, err := s.IdP.Sign(s.IdP.Claims("user_dev_tpl", config.DevAudience, "dev@example.com", "Dev"))
			if err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, "the example template listed", 10*time.Second, func() bool {
				req, _ := http.NewRequest("GET", base+"/v1/templates", nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode == 200 && strings.Contains(string(b), `"name":"loop-idea","version":1`)
			})
		})
	}
}
