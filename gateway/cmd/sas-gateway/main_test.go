package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

const testVersion = "v0.0.0-e2e"

// binary is sas-gateway built the way the Dockerfile builds it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sas-gateway-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sas-gateway")
	build := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/signals-sorcery/sas/shared/buildinfo.Version="+testVersion,
		"-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sas-gateway:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs the binary with exactly env (plus PATH) and args.
func run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func noStack(t *testing.T, r result) {
	t.Helper()
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		t.Errorf("stderr has a Go stack trace:\n%s", r.stderr)
	}
}

func TestVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r := run(t, nil, args...)
		if r.code != 0 || strings.TrimSpace(r.stdout) != testVersion {
			t.Errorf("%v: code %d, stdout %q, want %q", args, r.code, r.stdout, testVersion)
		}
	}
	for _, args := range [][]string{{"--help"}, {"help"}, {"serve", "--help"}, {"users", "set-plan", "-h"}} {
		r := run(t, nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout+r.stderr, "sas-gateway users set-plan") {
			t.Errorf("%v: code %d, output %q", args, r.code, r.stdout+r.stderr)
		}
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--bogus"},
		{"frobnicate"},
		{"users"},
		{"users", "set-plan", "user_1"},
		{"users", "remove", "user_1"},
		{"users", "delete"},
		{"users", "delete", "user_1", "extra"},
		{"migrate", "extra"},
	} {
		r := run(t, nil, args...)
		if r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
		noStack(t, r)
	}
}

// TestServeBadConfig: exit 1 before listening, one line naming every bad
// variable, and no secret.
func TestServeBadConfig(t *testing.T) {
	r := run(t, map[string]string{"PORT": "x", "REDIS_URL": "redis://:s3cret@host:bad"})
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	line := strings.TrimSpace(r.stderr)
	if strings.Count(line, "\n") != 0 {
		t.Errorf("want one line, got:\n%s", r.stderr)
	}
	for _, name := range []string{"PORT", "CLERK_ISSUER", "CLERK_AUDIENCE", "DATABASE_URL", "REDIS_URL"} {
		if !strings.Contains(line, name) {
			t.Errorf("message does not name %s: %s", name, line)
		}
	}
	if strings.Contains(line, "s3cret") {
		t.Errorf("message leaks a secret: %s", line)
	}
	noStack(t, r)

	// A price table that leaves a plan's model unpriced stops the start,
	// naming it.
	prices := filepath.Join(t.TempDir(), "prices.json")
	if err := os.WriteFile(prices, []byte(`{"gpt-4o-mini":{"input":0.15,"cached_input":0.075,"output":0.6}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r = run(t, map[string]string{"CLERK_ISSUER": "https://clerk.example.com", "CLERK_AUDIENCE": "a", "DATABASE_URL": "postgres://h/db",
		"REDIS_URL": "redis://h:6379", "SAS_PRICES_FILE": prices}, "serve")
	if r.code != 1 || !strings.Contains(r.stderr, "pro: gpt-4o") || !strings.Contains(r.stderr, "SAS_PRICES_FILE") {
		t.Errorf("unpriced model: exit %d, %q", r.code, r.stderr)
	}
	noStack(t, r)
}

// TestMigrateAndUsers drives the operator commands against a real database.
func TestMigrateAndUsers(t *testing.T) {
	d := testenv.NewEmptyDatabase(t)
	env := map[string]string{"DATABASE_URL": d.PoolerURL}
	for range 2 { // idempotent
		if r := run(t, env, "migrate"); r.code != 0 {
			t.Fatalf("migrate: exit %d: %s", r.code, r.stderr)
		}
	}
	// A user appears on first sign-in; insert one as /v1/me would.
	pool := openPool(t, d.URL)
	if _, err := pool.Exec(context.Background(), `INSERT INTO users (clerk_user_id, email, username) VALUES ('user_abc123', 'steve@example.com', 'Steve')`); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "users", "set-plan", "user_abc123", "pro")
	if r.code != 0 {
		t.Fatalf("set-plan: exit %d: %s", r.code, r.stderr)
	}
	var me map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &me); err != nil || me["plan"] != "pro" || me["id"] != "user_abc123" {
		t.Errorf("set-plan output %q (%v)", r.stdout, err)
	}
	if r := run(t, env, "users", "set-status", "user_abc123", "suspended"); r.code != 0 || !strings.Contains(r.stdout, `"suspended"`) {
		t.Errorf("set-status: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "users", "show", "user_abc123"); r.code != 0 || !strings.Contains(r.stdout, `"steve@example.com"`) {
		t.Errorf("show: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	// deleted: erased, shown as deleted.
	if r := run(t, env, "users", "set-status", "user_abc123", "deleted"); r.code != 0 || !strings.Contains(r.stdout, `"deleted"`) {
		t.Errorf("set-status deleted: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if r := run(t, env, "users", "show", "user_abc123"); r.code != 0 || !strings.Contains(r.stdout, `"status": "deleted"`) || strings.Contains(r.stdout, "steve") {
		t.Errorf("show a deleted user: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"users", "set-plan", "user_nobody", "pro"},
		{"users", "set-plan", "user_abc123", "gold"},
		{"users", "set-status", "user_abc123", "banned"},
	} {
		r := run(t, env, args...)
		if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || r.stdout != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and one line", args, r.code, r.stdout, r.stderr)
		}
		noStack(t, r)
	}
	// Unreachable database: exit 1, one line, quickly.
	r = run(t, map[string]string{"DATABASE_URL": "postgres://u:pw-s3cret@127.0.0.1:9/x?connect_timeout=2"}, "users", "show", "x")
	if r.code != 1 || strings.Contains(r.stderr, "pw-s3cret") {
		t.Errorf("unreachable DB: exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestUsersDelete: `users delete` deletes an account as DELETE /v1/me does
// — subscriptions cancelled at Stripe (stripe-mock), the row erased, the
// user deleted at Clerk with the secret key — and can be run again; with
// Clerk failing it exits 1 in one line, the account already erased here.
func TestUsersDelete(t *testing.T) {
	d := testenv.NewDatabase(t)
	var mu sync.Mutex
	var clerkCalls []string
	clerkStatus := http.StatusOK
	clerk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		clerkCalls = append(clerkCalls, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		w.WriteHeader(clerkStatus)
		io.WriteString(w, `{"deleted":true}`)
	}))
	defer clerk.Close()
	env := map[string]string{
		"DATABASE_URL": d.URL, "STRIPE_API_KEY": "sk_test_123", "STRIPE_WEBHOOK_SECRET": "whsec_x", "STRIPE_PRO_PRICE_ID": "price_pro",
		"STRIPE_API_BASE": testenv.StripeMockURL(t), "APP_RETURN_URL": "sas://billing/done",
		"CLERK_SECRET_KEY": "sk_test_clerk", "CLERK_API_URL": clerk.URL,
	}
	pool := openPool(t, d.URL)
	user := "user_cli_delete_" + testenv.UUID()[:8]
	if _, err := pool.Exec(context.Background(), `INSERT INTO users (clerk_user_id, email, username, stripe_customer_id) VALUES ($1, 'gone@example.com', 'Gone', 'cus_cli')`, user); err != nil {
		t.Fatal(err)
	}
	r := run(t, env, "users", "delete", user)
	if r.code != 0 || !strings.Contains(r.stdout, `"status": "deleted"`) || strings.Contains(r.stdout, "gone@example.com") ||
		!strings.Contains(r.stderr, "Stripe subscriptions cancelled") || !strings.Contains(r.stderr, "deleted at Clerk") {
		t.Fatalf("users delete: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	if len(clerkCalls) != 1 || clerkCalls[0] != "DELETE /v1/users/"+user+" Bearer sk_test_clerk" {
		t.Errorf("Clerk calls: %q", clerkCalls)
	}
	if strings.Contains(r.stderr, "sk_test_clerk") || strings.Contains(r.stderr, "sk_test_123") {
		t.Errorf("a key in the output: %s", r.stderr)
	}
	// Again, with Clerk failing: exit 1, one line; the account stays erased.
	mu.Lock()
	clerkStatus = http.StatusInternalServerError
	mu.Unlock()
	r = run(t, env, "users", "delete", user)
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || strings.Contains(r.stderr, "sk_test") {
		t.Errorf("users delete with Clerk down: exit %d, stderr %q", r.code, r.stderr)
	}
	noStack(t, r)
	if r := run(t, env, "users", "show", user); !strings.Contains(r.stdout, `"status": "deleted"`) || strings.Contains(r.stdout, "gone@") {
		t.Errorf("after a failed Clerk call: %s", r.stdout)
	}
	// Without Stripe or Clerk configured: erased here only, and said so.
	r = run(t, map[string]string{"DATABASE_URL": d.URL}, "users", "delete", user)
	if r.code != 0 || !strings.Contains(r.stderr, "Stripe not called") || !strings.Contains(r.stderr, "Clerk not called") {
		t.Errorf("users delete, nothing configured: exit %d: %s", r.code, r.stderr)
	}
	if r := run(t, map[string]string{"DATABASE_URL": d.URL}, "users", "delete", "user_nobody"); r.code != 1 {
		t.Errorf("users delete of an unknown user: exit %d", r.code)
	}
}

// TestUsersCommandsTellTheInstances (found in review): with REDIS_URL set,
// `users set-plan`, `set-status` and `delete` announce the change on the
// userbus, so a running gateway — here one whose user cache keeps rows for
// an hour — drops its cached row at once instead of serving it.
func TestUsersCommandsTellTheInstances(t *testing.T) {
	d := testenv.NewDatabase(t)
	gw, err := app.New(context.Background(), config.Config{Issuer: testenv.NewIssuer(t, "RS256", nil).Issuer(), Audiences: []string{"sas-api"},
		DatabaseURL: d.URL, RedisURL: testenv.RedisURL(t)}, slog.New(slog.DiscardHandler), app.Deps{UserTTL: time.Hour, NoLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	ctx := context.Background()
	user := "user_cli_bus_" + testenv.UUID()[:8]
	cached := func() gateway.User {
		u, err := gw.Users.UpsertUser(ctx, gateway.Identity{Subject: user})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := cached(); u.Plan != "free" { // creates and caches the user
		t.Fatalf("new user: %+v", u)
	}
	env := map[string]string{"DATABASE_URL": d.URL, "REDIS_URL": testenv.RedisURL(t)}
	for _, c := range []struct {
		args []string
		want func(gateway.User) bool
	}{
		{[]string{"users", "set-plan", user, "pro"}, func(u gateway.User) bool { return u.Plan == "pro" }},
		{[]string{"users", "set-status", user, "suspended"}, func(u gateway.User) bool { return u.Status == "suspended" }},
		{[]string{"users", "delete", user}, func(u gateway.User) bool { return u.Status == "deleted" }},
	} {
		if r := run(t, env, c.args...); r.code != 0 {
			t.Fatalf("%v: exit %d: %s", c.args, r.code, r.stderr)
		}
		testenv.WaitFor(t, fmt.Sprint("the gateway to see ", c.args), 10*time.Second, func() bool { return c.want(cached()) })
	}
}

// TestServe runs `sas-gateway serve` as Fly would: /healthz, /readyz and
// /v1/me answer, logs are JSON lines, and SIGTERM stops it cleanly.
func TestServe(t *testing.T) {
	iss := testenv.NewIssuer(t, "RS256", nil)
	d := testenv.NewDatabase(t)
	port := freePort(t)
	cmd := exec.Command(binary, "serve")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOST=127.0.0.1",
		"PORT=" + port,
		"METRICS_ADDR=127.0.0.1:0",
		"CLERK_ISSUER=" + iss.Issuer(),
		"CLERK_AUDIENCE=sas-api,sas-local",
		"DATABASE_URL=" + d.PoolerURL,
		"REDIS_URL=" + testenv.RedisURL(t),
		"LOG_LEVEL=debug",
	}
	stderr, exited := start(t, cmd)
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, exited)

	tok := iss.Token(t, "user_abc123", "sas-api", "steve@example.com", "Steve", nil)
	status, body := get(t, base+"/v1/me", tok)
	want := `{"id":"user_abc123","email":"steve@example.com","username":"Steve","plan":"free","status":"active"}`
	if status != 200 || strings.TrimSpace(body) != want {
		t.Errorf("/v1/me = %d %s", status, body)
	}
	if status, body := get(t, base+"/readyz", ""); status != 200 {
		t.Errorf("/readyz = %d %s", status, body)
	}
	if status, _ := get(t, base+"/v1/me", ""); status != 401 {
		t.Errorf("/v1/me without token = %d", status)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
	logs := stderr.String()
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
	}
	if !strings.Contains(logs, "shutting down") {
		t.Errorf("no shutdown log line:\n%s", logs)
	}
	if strings.Contains(logs, tok[strings.LastIndex(tok, ".")+1:]) {
		t.Error("token signature in the logs")
	}
}

func TestServePortBusy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	r := run(t, map[string]string{
		"HOST": "127.0.0.1", "PORT": port, "METRICS_ADDR": "127.0.0.1:0",
		"CLERK_ISSUER": "http://127.0.0.1:9", "CLERK_AUDIENCE": "a",
		"DATABASE_URL": "postgres://127.0.0.1:9/x", "REDIS_URL": "redis://127.0.0.1:9",
	}, "serve")
	if r.code != 1 || !strings.Contains(r.stderr, port) || !strings.Contains(r.stderr, "PORT") {
		t.Errorf("exit %d, stderr %q; want 1 naming the port and PORT", r.code, r.stderr)
	}
	noStack(t, r)
}

// start starts cmd, collecting its stderr, and kills it when t ends.
func start(t *testing.T, cmd *exec.Cmd) (*testenv.SyncBuffer, <-chan error) {
	t.Helper()
	stderr := &testenv.SyncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return stderr, exited
}

func waitHealthy(t *testing.T, base string, exited <-chan error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("sas-gateway exited during startup: %v", err)
		default:
		}
		if status, _ := get(t, base+"/healthz", ""); status == 200 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("sas-gateway not healthy within 15 s")
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestDevInProcessStartsQuietly (issue 24): `sas-gateway dev` with nothing
// configured — users in memory, Redis in process — starts without a single
// warning (it printed go-redis's "failed to initialize maintnotifications"
// at every start: its client skipped the options every other client has).
func TestDevInProcessStartsQuietly(t *testing.T) {
	port := freePort(t)
	cmd := exec.Command(binary, "dev")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port}
	stderr, exited := start(t, cmd)
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, exited)
	if status, body := get(t, base+"/readyz", ""); status != 200 {
		t.Errorf("/readyz = %d %s", status, body)
	}
	time.Sleep(500 * time.Millisecond) // what a first connection would log
	_ = cmd.Process.Signal(syscall.SIGTERM)
	<-exited
	if out := stderr.String(); strings.Contains(out, `"level":"WARN"`) || strings.Contains(out, "maintnotifications") {
		t.Errorf("a warning at start:\n%s", out)
	}
}

// TestDev runs `sas-gateway dev` on a real Postgres and Redis: it migrates,
// binds 127.0.0.1 only, serves both discovery documents of the dev IdP, and
// is ready.
func TestDev(t *testing.T) {
	d := testenv.NewEmptyDatabase(t)
	port := freePort(t)
	cmd := exec.Command(binary, "dev")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port, "DATABASE_URL=" + d.PoolerURL, "REDIS_URL=" + testenv.RedisURL(t)}
	stderr, exited := start(t, cmd)
	base := "http://127.0.0.1:" + port
	waitHealthy(t, base, exited)
	if status, body := get(t, base+"/readyz", ""); status != 200 {
		t.Errorf("/readyz = %d %s", status, body)
	}
	for _, doc := range []string{"openid-configuration", "oauth-authorization-server"} {
		status, body := get(t, base+"/dev/idp/.well-known/"+doc, "")
		if status != 200 || !strings.Contains(body, `"issuer":"`+base+`/dev/idp"`) || !strings.Contains(body, `"S256"`) {
			t.Errorf("%s = %d %s", doc, status, body)
		}
	}
	// Loopback only: the port is not reachable on another local address.
	if addrs, _ := net.InterfaceAddrs(); len(addrs) > 0 {
		for _, a := range addrs {
			ip, _, _ := net.ParseCIDR(a.String())
			if ip == nil || ip.IsLoopback() || ip.To4() == nil {
				continue
			}
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), port), time.Second); err == nil {
				c.Close()
				t.Errorf("sas-gateway dev answers on %s", ip)
			}
		}
	}
	for _, want := range []string{"sas-login --profile local login", base + "/v1/me", "PostgreSQL from DATABASE_URL"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, stderr.String())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	// It migrated the database.
	var n int
	if err := openPool(t, d.URL).QueryRow(context.Background(), "SELECT count(*) FROM users").Scan(&n); err != nil {
		t.Errorf("users table: %v", err)
	}
}
