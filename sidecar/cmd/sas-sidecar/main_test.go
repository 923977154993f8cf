package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
)

// The real binaries: sas-sidecar serve --stdio against `sas-gateway dev`
// (gateway + dev IdP + dev model in one process, real Postgres and Redis).

var bin map[string]string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = e2etest.Build(map[string]string{"sas-sidecar": ".", "sas-gateway": "../../../gateway/cmd/sas-gateway", "sas-login": "../sas-login"})
	// Every goroutine must be gone when the tests end.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		cleanup()
		os.Exit(code)
	}))
}

type syncBuf = e2etest.Buffer

func freePort(t *testing.T) string { return e2etest.FreePort(t) }

// devStack runs `sas-gateway dev --auto-approve` on Postgres and Redis from
// scripts/test.
func devStack(t *testing.T) string {
	t.Helper()
	for _, v := range []string{"TEST_DATABASE_URL", "TEST_REDIS_URL"} {
		if os.Getenv(v) == "" {
			t.Fatalf("%s is not set: run scripts/test", v)
		}
	}
	port := freePort(t)
	cmd := exec.Command(bin["sas-gateway"], "dev", "--auto-approve")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port,
		"DATABASE_URL=" + os.Getenv("TEST_DATABASE_URL"), "REDIS_URL=" + os.Getenv("TEST_REDIS_URL")}
	logs := &syncBuf{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://127.0.0.1:" + port
	e2etest.WaitHTTP(t, base+"/readyz", logs)
	return base
}

// sidecar is a running `sas-sidecar serve --stdio`.
type sidecar struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	home   string
	env    []string
	socket string
	stderr *syncBuf
	exited chan error

	mu      sync.Mutex
	waiters map[string]chan map[string]any
	notes   chan map[string]any
	nextID  int
}

func home(t *testing.T, gateway string) (string, []string) {
	var h string
	if runtime.GOOS == "windows" {
		h = tempdir.New(t) // no socket path to keep short there: a named pipe
	} else {
		var err error
		h, err = os.MkdirTemp("/tmp", "sas-e2e-") // short: socket paths have a length limit
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(h) })
	}
	return h, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + h, "XDG_CONFIG_HOME=" + filepath.Join(h, "config"),
		"APPDATA=" + filepath.Join(h, "AppData"), // the config dir on Windows
		"XDG_RUNTIME_DIR=" + filepath.Join(h, "run"), "SAS_PROFILE=local", "SAS_ISSUER=" + gateway + "/dev/idp",
		"SAS_GATEWAY_URL=" + gateway, "SAS_TOKEN_STORE=file", "SAS_REDIRECT_PORT=" + freePort(t)}
}

// configDir is the sidecar's directory under home h: the XDG config dir
// home gives it, %AppData% on Windows.
func configDir(h string) string {
	if runtime.GOOS == "windows" {
		return filepath.Join(h, "AppData", "sas")
	}
	return filepath.Join(h, "config", "sas")
}

func startSidecar(t *testing.T, h string, env []string, args ...string) *sidecar {
	t.Helper()
	_ = os.MkdirAll(filepath.Join(h, "run"), 0o700)
	cmd := exec.Command(bin["sas-sidecar"], append([]string{"serve", "--stdio"}, args...)...)
	cmd.Env = env
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	s := &sidecar{t: t, cmd: cmd, stdin: stdin, home: h, env: env, stderr: &syncBuf{}, exited: make(chan error, 1),
		waiters: map[string]chan map[string]any{}, notes: make(chan map[string]any, 100)}
	cmd.Stderr = s.stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("sidecar stderr:\n%s", s.stderr)
		}
	})
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 16<<20)
	if !lines.Scan() {
		t.Fatalf("no ready line; stderr:\n%s", s.stderr)
	}
	var ready struct {
		Method string
		Params struct{ Socket, Version string }
	}
	if err := json.Unmarshal(lines.Bytes(), &ready); err != nil || ready.Method != "ready" {
		t.Fatalf("first line %q is not the ready notification", lines.Text())
	}
	t.Logf("ready after %v", time.Since(start))
	s.socket = ready.Params.Socket
	go func() {
		for lines.Scan() {
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				t.Errorf("stdout line is not JSON: %q", lines.Text())
				continue
			}
			if id, ok := m["id"]; ok {
				key := fmt.Sprint(id)
				s.mu.Lock()
				ch := s.waiters[key]
				s.mu.Unlock()
				if ch != nil {
					ch <- m
				}
				continue
			}
			s.notes <- m
		}
	}()
	go func() { s.exited <- cmd.Wait() }()
	return s
}

// call sends a request and waits for its response.
func (s *sidecar) call(method string, params any) map[string]any {
	s.t.Helper()
	s.mu.Lock()
	s.nextID++
	id := s.nextID
	ch := make(chan map[string]any, 1)
	s.waiters[strconv.Itoa(id)] = ch
	s.mu.Unlock()
	msg := map[string]any{"jsonrpc": "2.0", "id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	b, _ := json.Marshal(msg)
	s.send(string(b))
	select {
	case m := <-ch:
		return m
	case <-time.After(30 * time.Second):
		s.t.Fatalf("no answer to %s", method)
		return nil
	}
}

func (s *sidecar) send(line string) {
	s.t.Helper()
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// note waits for the next notification named method.
func (s *sidecar) note(method string) map[string]any {
	s.t.Helper()
	for {
		select {
		case m := <-s.notes:
			if m["method"] == method {
				return m
			}
		case <-time.After(30 * time.Second):
			s.t.Fatalf("no %s notification", method)
			return nil
		}
	}
}

// login signs in through the sidecar, playing the browser with the URL of
// the loginStarted notification; it returns the login response.
func (s *sidecar) login() map[string]any {
	s.t.Helper()
	done := make(chan map[string]any, 1)
	go func() { done <- s.call("login", nil) }()
	url := s.note("loginStarted")["params"].(map[string]any)["url"].(string)
	resp, err := http.Get(url)
	if err != nil {
		s.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return <-done
}

// localAPI is an HTTP client for the sidecar's local API: the socket from
// ready (a named pipe on Windows).
func (s *sidecar) localAPI() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dialLocalAPI(ctx, s.socket)
	}}}
}

func result(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	r, ok := m["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result: %v", m)
	}
	return r
}

func TestSidecarEndToEnd(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)

	st := result(t, s.call("status", nil))
	if st["signedIn"] != false || st["user"] != nil {
		t.Fatalf("status before sign-in: %v", st)
	}
	// Two logins at once share one browser flow.
	second := make(chan map[string]any, 1)
	done := make(chan map[string]any, 1)
	go func() { done <- s.call("login", nil) }()
	url := s.note("loginStarted")["params"].(map[string]any)["url"].(string)
	go func() { second <- s.call("login", nil) }()
	time.Sleep(50 * time.Millisecond) // let the second one join
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r1, r2 := result(t, <-done), result(t, <-second)
	if r1["signedIn"] != true || r2["signedIn"] != true {
		t.Fatalf("login results %v / %v", r1, r2)
	}
	select {
	case n := <-s.notes:
		if n["method"] == "loginStarted" {
			t.Error("a second browser flow was started")
		}
		if n["method"] == "authChanged" && n["params"].(map[string]any)["signedIn"] != true {
			t.Errorf("authChanged = %v", n)
		}
	case <-time.After(time.Second):
	}

	// request /v1/me over stdio.
	me := result(t, s.call("request", map[string]any{"method": "GET", "path": "/v1/me"}))
	body, _ := me["body"].(map[string]any)
	if me["status"] != float64(200) || body["email"] != "dev@example.com" || me["headers"].(map[string]any)["content-type"] != "application/json" {
		t.Fatalf("request /v1/me = %v", me)
	}
	// And over the socket.
	c := s.localAPI()
	r, err := c.Get("http://sas/v1/me")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 200 || !strings.Contains(string(b), `"dev@example.com"`) {
		t.Fatalf("socket /v1/me = %d %s", r.StatusCode, b)
	}
	checkSocketOS(t, s.socket)
	r, _ = c.Get("http://sas/sidecar/status")
	b, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if !strings.Contains(string(b), `"signedIn":true`) {
		t.Errorf("socket status: %s", b)
	}
	// The token never appears in what the app sees.
	tok := storedToken(t, h)
	all, _ := json.Marshal([]any{me, st, r1})
	if strings.Contains(string(all)+string(b)+s.stderr.String(), tok) {
		t.Error("the ID token reached the app or the log")
	}

	// Streaming: chunks arrive as the dev model produces them (it pauses
	// between chunks), not all at once at the end.
	req, _ := http.NewRequest("POST", "http://sas/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"stream through the sidecar please"}]}`))
	r, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(r.Body)
	var first, last time.Time
	chunks := 0
	for {
		line, err := br.ReadString('\n')
		if strings.HasPrefix(line, "data: ") {
			if first.IsZero() {
				first = time.Now()
			}
			last = time.Now()
			chunks++
		}
		if err != nil {
			break
		}
	}
	r.Body.Close()
	if chunks < 5 || last.Sub(first) < 40*time.Millisecond {
		t.Errorf("%d chunks over %v: the stream was not relayed as it came", chunks, last.Sub(first))
	}

	// A request from a web page is refused.
	req, _ = http.NewRequest("GET", "http://sas/v1/me", nil)
	req.Header.Set("Origin", "https://evil.example.com")
	if r, err := c.Do(req); err != nil || r.StatusCode != 403 {
		t.Errorf("request with Origin: %v %v", r, err)
	} else {
		r.Body.Close()
	}

	// Logout clears the store and is announced.
	if out := result(t, s.call("logout", nil)); out["signedIn"] != false {
		t.Errorf("logout = %v", out)
	}
	if n := s.note("authChanged"); n["params"].(map[string]any)["signedIn"] != false {
		t.Errorf("authChanged after logout = %v", n)
	}
	if r, _ := c.Get("http://sas/v1/me"); r == nil || r.StatusCode != 401 {
		t.Errorf("socket /v1/me after logout: %v", r)
	} else {
		b, _ := io.ReadAll(r.Body)
		r.Body.Close()
		if !strings.Contains(string(b), `"not_signed_in"`) {
			t.Errorf("body: %s", b)
		}
	}

	// Closing stdin (the app died) ends the sidecar within 2 s, socket gone.
	start := time.Now()
	s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(2 * time.Second):
		t.Fatal("still running 2 s after stdin closed")
	}
	t.Logf("exit after stdin close: %v", time.Since(start))
	if err := socketGone(s.socket); err != nil {
		t.Errorf("socket left behind: %v", err)
	}
}

func storedToken(t *testing.T, h string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(configDir(h), "tokens-local.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		IDToken string `json:"id_token"`
	}
	_ = json.Unmarshal(b, &f)
	return f.IDToken
}

// TestRefreshOn401: a stored token the gateway refuses (here: its signature
// damaged, its expiry far) is refreshed once and the call retried.
func TestRefreshOn401(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)
	if r := result(t, s.login()); r["signedIn"] != true {
		t.Fatal("not signed in")
	}
	path := filepath.Join(configDir(h), "tokens-local.json")
	b, _ := os.ReadFile(path)
	var f map[string]any
	_ = json.Unmarshal(b, &f)
	bad := f["id_token"].(string)
	bad = bad[:len(bad)-6] + "AAAAAA"
	f["id_token"] = bad
	b, _ = json.Marshal(f)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	me := result(t, s.call("request", map[string]any{"path": "/v1/me"}))
	if me["status"] != float64(200) {
		t.Fatalf("after a 401: %v", me)
	}
	if !strings.Contains(s.stderr.String(), "gateway answered 401: refreshing the session and retrying once") {
		t.Error("no refresh-and-retry logged")
	}
	if storedToken(t, h) == bad {
		t.Error("the refused token is still stored")
	}
}

// TestTerminalSignInIsPickedUp: sas-login in a terminal signs in; the
// running sidecar sees it (status re-reads the store) and announces it.
func TestTerminalSignInIsPickedUp(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, append(env, "SAS_SIDECAR_WATCH_INTERVAL=200ms"))
	cmd := exec.Command(bin["sas-login"], "login", "--no-browser")
	cmd.Env = env
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if i := strings.Index(sc.Text(), "http://127.0.0.1:"); i >= 0 && strings.Contains(sc.Text(), "/oauth/authorize") {
			resp, err := http.Get(strings.TrimSpace(sc.Text()[i:]))
			if err == nil {
				resp.Body.Close()
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("sas-login: %v", err)
	}
	if n := s.note("authChanged"); n["params"].(map[string]any)["signedIn"] != true {
		t.Errorf("authChanged = %v", n)
	}
	if st := result(t, s.call("status", nil)); st["signedIn"] != true {
		t.Errorf("status = %v", st)
	}
}

// TestJSONRPCErrors: malformed lines get JSON-RPC errors and the daemon
// keeps serving.
func TestJSONRPCErrors(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)
	bad := map[string]float64{
		`{"jsonrpc":"2.0","id":101,"method":"frobnicate"}`:                         -32601,
		`{"jsonrpc":"1.0","id":102,"method":"status"}`:                             -32600,
		`{"jsonrpc":"2.0","id":103,"method":"request","params":{"path":"/etc"}}`:   -32602,
		`{"jsonrpc":"2.0","id":104,"method":"request","params":{"bogus":true}}`:    -32602,
		`{"jsonrpc":"2.0","id":105,"method":"request","params":{"path":"/v1/me"}}`: 0, // not signed in: a result with 401
	}
	for line, code := range bad {
		var req struct{ ID int }
		_ = json.Unmarshal([]byte(line), &req)
		ch := make(chan map[string]any, 1)
		s.mu.Lock()
		s.waiters[strconv.Itoa(req.ID)] = ch
		s.mu.Unlock()
		s.send(line)
		m := <-ch
		if code == 0 {
			if r := result(t, m); r["status"] != float64(401) {
				t.Errorf("%s → %v", line, m)
			}
			continue
		}
		e, _ := m["error"].(map[string]any)
		if e["code"] != code || e["message"] == "" {
			t.Errorf("%s → %v, want error %v", line, m, code)
		}
	}
	// Lines without a usable id are answered with id null.
	for _, line := range []string{`not json`, `[1,2]`, `{"jsonrpc":"2.0","id":{},"method":"status"}`} {
		ch := make(chan map[string]any, 1)
		s.mu.Lock()
		s.waiters["<nil>"] = ch
		s.mu.Unlock()
		s.send(line)
		select {
		case m := <-ch:
			if m["error"] == nil {
				t.Errorf("%q → %v", line, m)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("no answer to %q", line)
		}
	}
	if st := result(t, s.call("status", nil)); st["signedIn"] != false {
		t.Error("daemon did not keep serving")
	}
}

// stdioOnly runs `sas-sidecar serve --stdio` with args whose socket cannot
// be served, and checks that stdio still serves: ready says "socket": null,
// stderr says why (want), and a status call is answered.
func stdioOnly(t *testing.T, env []string, want string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin["sas-sidecar"], append([]string{"serve", "--stdio"}, args...)...)
	cmd.Env = env
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = cmd.Wait() }()
	br := bufio.NewReader(stdout)
	ready, _ := br.ReadString('\n')
	if !strings.Contains(ready, `"method":"ready"`) || !strings.Contains(ready, `"socket":null`) {
		t.Errorf("%v: ready = %q, want socket null", args, ready)
	}
	_, _ = io.WriteString(stdin, `{"jsonrpc":"2.0","id":1,"method":"status"}`+"\n")
	if answer, _ := br.ReadString('\n'); !strings.Contains(answer, `"signedIn"`) {
		t.Errorf("%v: status over stdio = %q", args, answer)
	}
	if !strings.Contains(stderr.String(), want) {
		t.Errorf("%v: stderr lacks %q:\n%s", args, want, stderr.String())
	}
}

// TestSocketLifecycle: a second live sidecar gets no socket (stdio only),
// or is refused when it serves nothing else; stopping (SIGTERM, or closing
// stdin on Windows) removes the socket within 2 s; a stale socket is
// cleaned up.
func TestSocketLifecycle(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)
	// A second sidecar on the same socket: refused with a clear message when
	// the socket is all it would serve; stdio only otherwise.
	second := exec.Command(bin["sas-sidecar"], "serve")
	second.Env = env
	out, err := second.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "another sas-sidecar is already serving") {
		t.Errorf("second sidecar: %v %s", err, out)
	}
	stdioOnly(t, env, "another sas-sidecar is already serving")
	start := time.Now()
	how := stop(s)
	select {
	case <-s.exited:
	case <-time.After(2 * time.Second):
		t.Fatalf("still running 2 s after %s", how)
	}
	t.Logf("exit after %s: %v", how, time.Since(start))
	if err := socketGone(s.socket); err != nil {
		t.Errorf("socket left behind after %s: %v", how, err)
	}
	stale := leaveStaleSocket(t, s.socket)
	s2 := startSidecar(t, h, env)
	if s2.socket != s.socket {
		t.Errorf("next sidecar's socket = %s, want %s", s2.socket, s.socket)
	}
	if st := result(t, s2.call("status", nil)); st["signedIn"] != false {
		t.Errorf("status = %v", st)
	}
	if stale && !strings.Contains(s2.stderr.String(), "removing a stale socket") {
		t.Error("stale socket removal not logged")
	}
}

// TestReviewedEdges: the cases a security review found.
func TestReviewedEdges(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)
	if r := result(t, s.login()); r["signedIn"] != true {
		t.Fatal("not signed in")
	}
	// Paths that would climb out of /v1/ are refused, over stdio and socket.
	for _, p := range []string{"/v1/../metrics", "/v1/%2e%2e/healthz", "/v1/..%2fhealthz", "/v1//me", "/v1/..#x", "/v1/me#x"} {
		// Over stdio a bad path is a bad parameter of the call.
		if e, _ := s.call("request", map[string]any{"path": p})["error"].(map[string]any); e["code"] != float64(-32602) {
			t.Errorf("request %s: %v", p, e)
		}
		if strings.Contains(p, "#") {
			continue // an HTTP client never sends a fragment to the socket
		}
		resp, err := s.localAPI().Get("http://sas" + p)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 || resp.StatusCode/100 == 3 {
				t.Errorf("socket %s: %d", p, resp.StatusCode)
			}
		}
	}
	// A line over the limit is answered, and the daemon goes on serving.
	ch := make(chan map[string]any, 1)
	s.mu.Lock()
	s.waiters["<nil>"] = ch
	s.mu.Unlock()
	s.send(`{"jsonrpc":"2.0","id":99,"method":"status","params":{"pad":"` + strings.Repeat("x", 9<<20) + `"}}`)
	select {
	case m := <-ch:
		if e, _ := m["error"].(map[string]any); e["code"] != float64(-32700) {
			t.Errorf("oversized line: %v", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to an oversized line")
	}
	if st := result(t, s.call("status", nil)); st["signedIn"] != true {
		t.Error("the daemon stopped serving after an oversized line")
	}
	// A running login (a notification: no id) does not hold up the exit.
	s.send(`{"jsonrpc":"2.0","method":"login"}`)
	s.note("loginStarted") // it is pending now: the browser was never followed
	start := time.Now()
	s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(2 * time.Second):
		t.Fatal("still running 2 s after stdin closed, with a sign-in pending")
	}
	t.Logf("exit with a pending sign-in: %v", time.Since(start))
	// --socket never replaces a file that is not a socket.
	notes := filepath.Join(h, "notes.txt")
	_ = os.WriteFile(notes, []byte("keep me"), 0o600)
	cmd := exec.Command(bin["sas-sidecar"], "serve", "--socket", notes)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), notASocket) {
		t.Errorf("--socket on a file: %v %s", err, out)
	}
	stdioOnly(t, env, notASocket, "--socket", notes)
	if b, _ := os.ReadFile(notes); string(b) != "keep me" {
		t.Error("the file was replaced")
	}
}

// TestAppRedirectSignIn: the sign-in that returns to the app's own scheme.
// login {"redirect":"app"} opens the provider with sas://callback; the
// "OS" hands the app the sas:// URL, which passes it on with completeLogin
// over stdio. A URL of another attempt is refused and the attempt goes on;
// completeLogin with nothing waiting is refused; the socket takes the same
// calls.
func TestAppRedirectSignIn(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)
	if e, _ := s.call("completeLogin", map[string]any{"url": "sas://callback?code=x&state=y"})["error"].(map[string]any); e == nil {
		t.Error("completeLogin with no sign-in waiting was accepted")
	}
	done := make(chan map[string]any, 1)
	go func() { done <- s.call("login", map[string]any{"redirect": "app"}) }()
	authURL := s.note("loginStarted")["params"].(map[string]any)["url"].(string)
	if !strings.Contains(authURL, "redirect_uri=sas%3A%2F%2Fcallback") {
		t.Fatalf("authorize URL %s does not redirect to the app", authURL)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location") // what the OS would hand the app
	if !strings.HasPrefix(callback, "sas://callback?") {
		t.Fatalf("the provider sent the browser to %q", callback)
	}
	forged := strings.Replace(callback, "state=", "state=forged", 1)
	if e, _ := s.call("completeLogin", map[string]any{"url": forged})["error"].(map[string]any); e == nil ||
		!strings.Contains(e["message"].(string), "another sign-in attempt") {
		t.Errorf("a callback of another attempt: %v", e)
	}
	if r := result(t, s.call("completeLogin", map[string]any{"url": callback})); r["signedIn"] != true {
		t.Errorf("completeLogin = %v", r)
	}
	if r := result(t, <-done); r["signedIn"] != true {
		t.Errorf("login = %v", r)
	}
	// The socket: the same two calls.
	_ = s.call("logout", nil)
	type answer struct {
		status int
		body   string
	}
	post := func(path, body string) answer {
		r, err := s.localAPI().Post("http://sas"+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return answer{r.StatusCode, string(b)}
	}
	socketDone := make(chan answer, 1)
	go func() { socketDone <- post("/sidecar/login", `{"redirect":"app"}`) }()
	authURL = s.note("loginStarted")["params"].(map[string]any)["url"].(string)
	resp, err = noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if a := post("/sidecar/completeLogin", `{"url":`+strconv.Quote(resp.Header.Get("Location"))+`}`); a.status != 200 || !strings.Contains(a.body, `"signedIn":true`) {
		t.Errorf("socket completeLogin: %d %s", a.status, a.body)
	}
	if a := <-socketDone; a.status != 200 || !strings.Contains(a.body, `"signedIn":true`) {
		t.Errorf("socket login: %d %s", a.status, a.body)
	}
	if a := post("/sidecar/login", `{"redirect":"carrier-pigeon"}`); a.status != 400 {
		t.Errorf("a bad redirect option: %d %s", a.status, a.body)
	}
}
