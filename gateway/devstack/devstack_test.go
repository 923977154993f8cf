package devstack_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

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

// TestStack: the in-memory stack serves the gateway, the provider's
// discovery at the issuer it trusts, and the dev model, and leaves nothing
// running once closed.
func TestStack(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	s, err := devstack.New(context.Background(), devstack.Options{Config: devConfig(t, nil), BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = s.Handler
	srv.Start()
	defer func() {
		srv.Close()
		s.Close()
	}()
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
	if !strings.Contains(s.Model, base+"/dev/openai/v1") || !strings.Contains(s.Users, "in memory") || !strings.Contains(s.Redis, "in-process") {
		t.Errorf("the stack says: %q, %q, %q", s.Model, s.Users, s.Redis)
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
