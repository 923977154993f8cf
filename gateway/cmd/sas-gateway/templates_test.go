package main_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/templates"
)

// TestTemplatesCommands: `templates put` refuses an invalid file naming
// every problem and stores nothing; a valid one becomes version 1, then 2,
// each run by a running gateway within 1 s (announced with REDIS_URL);
// `show` prints any version, `list` the current ones; `rollback` goes
// back, and refuses a version that does not exist.
func TestTemplatesCommands(t *testing.T) {
	d := testenv.NewDatabase(t)
	iss := testenv.NewIssuer(t, "RS256", nil)
	gw, err := app.New(context.Background(), config.Config{Issuer: iss.Issuer(), Audiences: []string{"sas-api"},
		DatabaseURL: d.URL, RedisURL: testenv.RedisURL(t), OpenAIAPIKey: "sk-unused", OpenAIBaseURL: "http://127.0.0.1:9/v1"},
		slog.New(slog.DiscardHandler), app.Deps{NoLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv := httptest.NewServer(gw.Handler)
	defer srv.Close()
	tok := iss.Token(t, "user_tpl_cli", "sas-api", "t@example.com", "T", nil)
	listed := func() int {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/templates", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list struct{ Data []templates.Info }
		_ = json.NewDecoder(resp.Body).Decode(&list)
		for _, i := range list.Data {
			if i.Name == "loop-idea" {
				return i.Version
			}
		}
		return 0
	}
	runWithin := func(what string, want int) {
		t.Helper()
		start := time.Now()
		for listed() != want {
			if time.Since(start) > time.Second {
				t.Fatalf("%s: the running gateway lists version %d 1 s later, want %d", what, listed(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	env := map[string]string{"DATABASE_URL": d.URL, "REDIS_URL": testenv.RedisURL(t)}
	dir := t.TempDir()
	file := func(name string, v any) string {
		b, _ := json.Marshal(v)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	bad := templates.Example()
	bad.Name, bad.Model, bad.Input = "Loop Idea", "gpt-9", "{{bars}} {{tempo}}"
	r := run(t, env, "templates", "put", file("bad.json", bad))
	noStack(t, r)
	for _, want := range []string{"nothing was stored", `name "Loop Idea"`, `model "gpt-9"`, "{{tempo}} is used but not declared", "variable key is declared but not used"} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("invalid put: exit %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
	if r := run(t, env, "templates", "put", file("typo.json", map[string]any{"name": "x", "inptu": "y"})); r.code != 1 || !strings.Contains(r.stderr, "inptu") {
		t.Errorf("a misspelt key: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, env, "templates", "list"); r.code != 0 || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("after the invalid puts, list: exit %d %q", r.code, r.stdout)
	}

	good := templates.Example()
	for v := 1; v <= 2; v++ {
		good.MaxOutputTokens = int64(100 * v)
		r := run(t, env, "templates", "put", file("good.json", good))
		if r.code != 0 || !strings.Contains(r.stdout, `"version": `+string(rune('0'+v))) {
			t.Fatalf("put %d: exit %d %q %s", v, r.code, r.stdout, r.stderr)
		}
		runWithin("put", v)
	}
	if r := run(t, env, "templates", "show", "loop-idea", "--version", "1"); r.code != 0 || !strings.Contains(r.stdout, `"max_output_tokens": 100`) {
		t.Errorf("show --version 1: exit %d %q %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "templates", "list"); r.code != 0 || !strings.Contains(r.stdout, "loop-idea") || !strings.Contains(r.stdout, "bars, key, style") {
		t.Errorf("list: exit %d %q", r.code, r.stdout)
	}
	if r := run(t, env, "templates", "rollback", "loop-idea", "1"); r.code != 0 {
		t.Fatalf("rollback: exit %d %s", r.code, r.stderr)
	}
	runWithin("rollback", 1)
	if r := run(t, env, "templates", "rollback", "loop-idea", "9"); r.code != 1 || !strings.Contains(r.stderr, "not_found") && !strings.Contains(r.stderr, "No template") {
		t.Errorf("rollback to a missing version: exit %d %s", r.code, r.stderr)
	}
	if r := run(t, env, "templates", "show"); r.code != 2 {
		t.Errorf("show without a name: exit %d", r.code)
	}
	// A bad version is a usage error, whatever the database's state.
	if r := run(t, map[string]string{}, "templates", "rollback", "loop-idea", "abc"); r.code != 2 || !strings.Contains(r.stderr, "positive integer") {
		t.Errorf("rollback to version abc without a database: exit %d %s", r.code, r.stderr)
	}
}
