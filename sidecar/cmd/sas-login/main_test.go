package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
	"github.com/signals-sorcery/sas/sidecar/internal/keyringtest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
)

// The real binaries: sas-login against `sas-gateway dev` (gateway + dev IdP
// in one process), with a test "browser" that follows the printed URL.

var bin map[string]string

func TestMain(m *testing.M) {
	var cleanup func()
	bin, cleanup = e2etest.Build(map[string]string{"sas-login": ".", "sas-gateway": "../../../gateway/cmd/sas-gateway"})
	// Every goroutine must be gone when the tests end.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		cleanup()
		os.Exit(code)
	}))
}

type syncBuf = e2etest.Buffer

func freePort(t *testing.T) string { return e2etest.FreePort(t) }

// stack is a running `sas-gateway dev` and a sas-login home for it.
type stack struct {
	t       *testing.T
	base    string
	home    string
	port    string // sas-login's loopback port
	store   string
	devLogs *syncBuf
	cliLogs *syncBuf // every sas-login stderr
}

func startDev(t *testing.T, autoApprove bool) *stack {
	t.Helper()
	port := freePort(t)
	args := []string{"dev"}
	if autoApprove {
		args = append(args, "--auto-approve")
	}
	cmd := exec.Command(bin["sas-gateway"], args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + port, "LOG_LEVEL=debug"}
	logs := &syncBuf{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	base := "http://127.0.0.1:" + port
	e2etest.WaitHTTP(t, base+"/healthz", logs)
	s := &stack{t: t, base: base, home: tempdir.New(t), port: freePort(t), store: "file", devLogs: logs, cliLogs: &syncBuf{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sas-gateway dev:\n%s\nsas-login:\n%s", logs, s.cliLogs)
		}
	})
	return s
}

// configDir is sas-login's directory under the home env gives it: the
// XDG config dir, %AppData% on Windows.
func (s *stack) configDir() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(s.home, "AppData", "sas")
	}
	return filepath.Join(s.home, ".config", "sas")
}

func (s *stack) env(extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + s.home, "XDG_CONFIG_HOME=" + filepath.Join(s.home, ".config"),
		"APPDATA=" + filepath.Join(s.home, "AppData"), // the config dir on Windows
		"SAS_PROFILE=local", "SAS_ISSUER=" + s.base + "/dev/idp", "SAS_GATEWAY_URL=" + s.base,
		"SAS_REDIRECT_PORT=" + s.port, "SAS_TOKEN_STORE=" + s.store}
	if v := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); v != "" {
		env = append(env, "DBUS_SESSION_BUS_ADDRESS="+v)
	}
	return append(env, extra...)
}

type result struct {
	stdout, stderr string
	code           int
}

func (s *stack) run(stdin io.Reader, env []string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin["sas-login"], args...)
	cmd.Env = env
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.MultiWriter(&errb, s.cliLogs)
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

var authorizeURL = regexp.MustCompile(`http://127\.0\.0\.1:\d+/dev/idp/oauth/authorize\?\S+`)

// login runs `sas-login login --no-browser`; act plays the browser with the
// printed URL. It returns the command's result.
func (s *stack) login(act func(authURL string, stdin io.Writer), extraEnv ...string) result {
	s.t.Helper()
	cmd := exec.Command(bin["sas-login"], "login", "--no-browser", "--timeout", "30s")
	cmd.Env = s.env(extraEnv...)
	stdin, _ := cmd.StdinPipe()
	stderr, _ := cmd.StderrPipe()
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	var errb bytes.Buffer
	sc := bufio.NewScanner(stderr)
	acted := false
	var actor sync.WaitGroup
	for sc.Scan() {
		line := sc.Text()
		errb.WriteString(line + "\n")
		s.cliLogs.Write([]byte(line + "\n"))
		if u := authorizeURL.FindString(line); u != "" && !acted {
			acted = true
			actor.Go(func() { act(u, stdin) })
		}
	}
	err := cmd.Wait()
	actor.Wait() // the "browser" finishes its page too
	stdin.Close()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	}
	return result{out.String(), errb.String(), code}
}

// browse follows the URL like a browser that reaches this machine.
func browse(authURL string, _ io.Writer) {
	if resp, err := http.Get(authURL); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// paste signs in "on another machine" and pastes the redirect URL.
func paste(authURL string, stdin io.Writer) {
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		return
	}
	resp.Body.Close()
	_, _ = io.WriteString(stdin, resp.Header.Get("Location")+"\n")
}

func (s *stack) tokenFile() map[string]any {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.configDir(), "tokens-local.json"))
	if err != nil {
		s.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		s.t.Fatal(err)
	}
	return m
}

// expire rewrites the stored ID token's exp claim (the expiry every store
// reads) as if it were about to lapse; its signature no longer matters: the
// refresh replaces it.
func (s *stack) expire() {
	s.t.Helper()
	m := s.tokenFile()
	parts := strings.Split(m["id_token"].(string), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		s.t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		s.t.Fatal(err)
	}
	claims["exp"] = time.Now().Add(30 * time.Second).Unix()
	payload, _ = json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	m["id_token"] = strings.Join(parts, ".")
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(s.configDir(), "tokens-local.json"), b, 0o600); err != nil {
		s.t.Fatal(err)
	}
}

func TestSignInAndUse(t *testing.T) {
	s := startDev(t, true)
	r := s.login(browse)
	if r.code != 0 || !strings.Contains(r.stderr, "Signed in as dev@example.com") || r.stdout != "" {
		t.Fatalf("login: exit %d, stdout %q\n%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"Waiting for sign-in (Ctrl-C to cancel)…", "/dev/idp/oauth/authorize?"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("login stderr lacks %q", want)
		}
	}
	if fi, err := os.Stat(filepath.Join(s.configDir(), "tokens-local.json")); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) { // Windows: no mode bits
		t.Errorf("token file: %v %v", fi, err)
	}

	tok := s.run(nil, s.env(), "token")
	if tok.code != 0 || strings.Count(tok.stdout, ".") != 2 || strings.Count(tok.stdout, "\n") != 1 || tok.stderr != "" {
		t.Fatalf("token: exit %d, stdout %q, stderr %q", tok.code, tok.stdout, tok.stderr)
	}
	// curl -H "Authorization: Bearer $(sas-login token)" $GATEWAY/v1/me
	req, _ := http.NewRequest("GET", s.base+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.stdout))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var me map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	if resp.StatusCode != 200 || me["email"] != "dev@example.com" || !strings.HasPrefix(me["id"], "user_") || me["plan"] != "free" {
		t.Fatalf("/v1/me = %d %v", resp.StatusCode, me)
	}

	// The dev stack's built-in model answers through the gateway's proxy.
	req, _ = http.NewRequest("POST", s.base+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello dev"}]}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok.stdout))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "hello dev") {
			t.Errorf("dev model completion: %d %s", resp.StatusCode, b)
		}
	}

	who := s.run(nil, s.env(), "whoami")
	if who.code != 0 || !strings.Contains(who.stdout, `"id":"`+me["id"]+`"`) {
		t.Errorf("whoami: exit %d %q %q", who.code, who.stdout, who.stderr)
	}

	st := s.run(nil, s.env(), "status", "--json")
	var status map[string]any
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || st.code != 0 {
		t.Fatalf("status --json: exit %d %q (%v)", st.code, st.stdout, err)
	}
	user, _ := status["user"].(map[string]any)
	if status["signedIn"] != true || status["profile"] != "local" || user["id"] != me["id"] || user["email"] != "dev@example.com" || status["expiresAt"] == nil {
		t.Errorf("status = %v", status)
	}
	if st := s.run(nil, s.env(), "status"); st.code != 0 || !strings.Contains(st.stdout, "dev@example.com") {
		t.Errorf("status: %d %q", st.code, st.stdout)
	}

	// Near expiry: token refreshes once; the next call reuses the new one.
	s.expire()
	t1 := s.run(nil, s.env(), "token")
	t2 := s.run(nil, s.env(), "token")
	if t1.code != 0 || t1.stdout == tok.stdout || t2.stdout != t1.stdout {
		t.Errorf("refresh: exit %d, new token %v, stable after %v", t1.code, t1.stdout != tok.stdout, t2.stdout == t1.stdout)
	}

	// scripts/smoke against the dev stack, with this signed-in sas-login;
	// not on Windows: the script is bash and runs go, neither of which a
	// Windows test binary under Wine has.
	if runtime.GOOS != "windows" {
		gocache, _ := exec.Command("go", "env", "GOCACHE").Output()
		gomodcache, _ := exec.Command("go", "env", "GOMODCACHE").Output()
		smoke := exec.Command("../../../scripts/smoke", s.base)
		smoke.Env = append(s.env(), "PATH="+filepath.Dir(bin["sas-login"])+":"+os.Getenv("PATH"),
			"GOCACHE="+strings.TrimSpace(string(gocache)), "GOMODCACHE="+strings.TrimSpace(string(gomodcache)))
		out, err := smoke.CombinedOutput()
		if err != nil || strings.Count(string(out), "PASS ") != 6 || !strings.Contains(string(out), "all steps passed") {
			t.Errorf("scripts/smoke: %v\n%s", err, out)
		}
	}

	// No token or refresh token in any log line or message, anywhere.
	secrets := []string{strings.TrimSpace(tok.stdout), strings.TrimSpace(t1.stdout), s.tokenFile()["refresh_token"].(string)}
	for range 2 { // logout is idempotent
		if r := s.run(nil, s.env(), "logout"); r.code != 0 || !strings.Contains(r.stderr, "Signed out") {
			t.Errorf("logout: %d %q", r.code, r.stderr)
		}
	}
	if st := s.run(nil, s.env(), "status", "--json"); st.code != 1 || !strings.Contains(st.stdout, `"signedIn": false`) {
		t.Errorf("status after logout: %d %q", st.code, st.stdout)
	}
	if r := s.run(nil, s.env(), "token"); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "sas-login login") {
		t.Errorf("token after logout: %d %q %q", r.code, r.stdout, r.stderr)
	}
	logs := s.devLogs.String() + s.cliLogs.String()
	for _, secret := range secrets {
		for _, part := range strings.Split(secret, ".") {
			if len(part) > 8 && strings.Contains(logs, part) {
				t.Errorf("a token part appears in the logs: %.12s…", part)
			}
		}
	}
}

func TestPasteMode(t *testing.T) {
	s := startDev(t, true)
	r := s.login(paste)
	if r.code != 0 || !strings.Contains(r.stderr, "Signed in as dev@example.com") {
		t.Fatalf("paste login: %d\n%s", r.code, r.stderr)
	}
	if r := s.run(nil, s.env(), "token"); r.code != 0 {
		t.Errorf("token: %d %s", r.code, r.stderr)
	}
}

// TestTwoProcessesRefreshOnce: two sas-login processes that both find the
// token about to expire refresh it once between them. The dev IdP rotates
// refresh tokens, so a second refresh with the same token would fail and
// end the session: both succeeding with the same token proves one grant.
func TestTwoProcessesRefreshOnce(t *testing.T) {
	s := startDev(t, true)
	if r := s.login(browse); r.code != 0 {
		t.Fatalf("login: %d %s", r.code, r.stderr)
	}
	for round := range 3 {
		s.expire()
		var wg sync.WaitGroup
		results := make([]result, 4)
		for i := range results {
			wg.Go(func() { results[i] = s.run(nil, s.env(), "token") })
		}
		wg.Wait()
		for i, r := range results {
			if r.code != 0 || r.stdout != results[0].stdout {
				t.Fatalf("round %d, process %d: exit %d, same token %v, stderr %q", round, i, r.code, r.stdout == results[0].stdout, r.stderr)
			}
		}
	}
}

func TestDeniedAndRevoked(t *testing.T) {
	s := startDev(t, false)
	deny := func(authURL string, _ io.Writer) {
		resp, err := http.Get(authURL)
		if err != nil {
			return
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		form := url.Values{}
		for _, m := range regexp.MustCompile(`name="([a-z_]+)" value="([^"]*)"`).FindAllStringSubmatch(string(page), -1) {
			form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
		}
		form.Set("action", "deny")
		if resp, err := http.PostForm(s.base+"/dev/idp/oauth/authorize", form); err == nil {
			resp.Body.Close()
		}
	}
	r := s.login(deny)
	if r.code != 1 || !strings.Contains(r.stderr, "access_denied") {
		t.Fatalf("denied: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(s.configDir(), "tokens-local.json")); !os.IsNotExist(err) {
		t.Error("something was stored after a denied sign-in")
	}
}

func TestRevokedRefresh(t *testing.T) {
	s := startDev(t, true)
	if r := s.login(browse); r.code != 0 {
		t.Fatalf("login: %d %s", r.code, r.stderr)
	}
	resp, err := http.PostForm(s.base+"/dev/idp/oauth/revoke", url.Values{"token": {s.tokenFile()["refresh_token"].(string)}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.expire()
	r := s.run(nil, s.env(), "token")
	if r.code != 1 || !strings.Contains(r.stderr, "run sas-login login") || r.stdout != "" {
		t.Errorf("revoked: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if st := s.run(nil, s.env(), "status"); st.code != 1 {
		t.Errorf("session not cleared after a refused refresh: status exit %d", st.code)
	}
}

// TestWhoamiRefreshesOn401: whoami calls the gateway the way the sidecar
// does (session.Transport): a stored token the gateway refuses — its
// signature damaged, its expiry far — is refreshed once and the call
// retried. (whoami had its own client, which printed the 401.)
func TestWhoamiRefreshesOn401(t *testing.T) {
	s := startDev(t, true)
	if r := s.login(browse); r.code != 0 {
		t.Fatalf("login: %d %s", r.code, r.stderr)
	}
	m := s.tokenFile()
	bad := m["id_token"].(string)
	bad = bad[:len(bad)-6] + "AAAAAA"
	m["id_token"] = bad
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(s.configDir(), "tokens-local.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	who := s.run(nil, s.env(), "whoami")
	if who.code != 0 || !strings.Contains(who.stdout, `"email":"dev@example.com"`) {
		t.Fatalf("whoami with a refused token: exit %d %q %q", who.code, who.stdout, who.stderr)
	}
	if s.tokenFile()["id_token"] == bad {
		t.Error("the refused token is still stored")
	}
}

func TestKeyring(t *testing.T) {
	keyringtest.Require(t)
	s := startDev(t, true)
	s.store = "keyring"
	if r := s.login(browse); r.code != 0 {
		t.Fatalf("login with the keyring: %d %s", r.code, r.stderr)
	}
	defer s.run(nil, s.env(), "logout")
	if r := s.run(nil, s.env(), "token"); r.code != 0 || strings.Count(r.stdout, ".") != 2 {
		t.Errorf("token from the keyring: %d %q", r.code, r.stderr)
	}
	if runtime.GOOS == "windows" {
		return // the Credential Manager cannot be made unreachable as a session bus can
	}
	// No Secret Service reachable: a clear error naming the way out.
	r := s.run(nil, s.env("DBUS_SESSION_BUS_ADDRESS=unix:path="+filepath.Join(tempdir.New(t), "nobus")), "token")
	if r.code != 1 || !strings.Contains(r.stderr, "--token-store file") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("no keyring: exit %d %q", r.code, r.stderr)
	}
}

func TestCommandLine(t *testing.T) {
	s := &stack{t: t, home: tempdir.New(t), cliLogs: &syncBuf{}, base: "http://127.0.0.1:9", port: "43110", store: "file"}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "sas-login login"},
		{[]string{"version"}, 0, ""},
		{[]string{"--version"}, 0, ""},
		{[]string{"login", "--bogus"}, 2, ""},
		{[]string{"frobnicate"}, 2, ""},
		{[]string{"token", "extra"}, 2, ""},
		{[]string{"token", "--profile", "staging"}, 1, "unknown profile"},
		{[]string{"token", "--issuer", "http://evil.example.com"}, 1, "https"},
		{[]string{"status"}, 1, "Not signed in"},
		{[]string{"token"}, 1, "sas-login login"},
		{[]string{"logout"}, 0, "Signed out"},
	} {
		r := s.run(nil, s.env(), tc.args...)
		if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.out) {
			t.Errorf("%v: exit %d (want %d), output %q", tc.args, r.code, tc.code, r.stdout+r.stderr)
		}
		if strings.Contains(r.stderr, "goroutine ") {
			t.Errorf("%v: stack trace", tc.args)
		}
	}
	// Port busy: exit 1 naming the port and the flag.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dev := startDev(t, true)
	dev.port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	r := dev.run(nil, dev.env(), "login", "--no-browser")
	if r.code != 1 || !strings.Contains(r.stderr, dev.port) || !strings.Contains(r.stderr, "--port") {
		t.Errorf("port busy: exit %d %q", r.code, r.stderr)
	}
}

// TestLoginCancelAndTimeout: Ctrl-C and --timeout end a waiting sign-in
// with exit 1 and one clear line, and free the port.
func TestLoginCancelAndTimeout(t *testing.T) {
	s := startDev(t, false) // consent page: nobody clicks
	r := s.run(nil, s.env(), "login", "--no-browser", "--timeout", "300ms")
	if r.code != 1 || !strings.Contains(r.stderr, "timed out") {
		t.Errorf("timeout: exit %d %q", r.code, r.stderr)
	}
	cmd := exec.Command(bin["sas-login"], "login", "--no-browser")
	cmd.Env = s.env()
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(stderr.String(), "Waiting for sign-in"); i++ {
		if i > 500 {
			t.Fatalf("never waited:\n%s", stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if runtime.GOOS == "windows" {
		// Go cannot send os.Interrupt to a process on Windows (Ctrl-C is a
		// console event), and the sign-in would wait forever.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Skip("windows: os.Interrupt cannot be sent to a process")
	}
	_ = cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	ee, ok := errors.AsType[*exec.ExitError](err)
	if !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "sign-in cancelled") || strings.Contains(stderr.String(), "goroutine") {
		t.Errorf("Ctrl-C: %v\n%s", err, stderr)
	}
	if ln, err := net.Listen("tcp", "127.0.0.1:"+s.port); err != nil {
		t.Errorf("port %s still taken after cancel: %v", s.port, err)
	} else {
		ln.Close()
	}
}

// TestDeleteAccount: delete-account asks first (anything but "delete"
// deletes nothing), then deletes the account at the gateway and the
// identity provider and signs out; the old token is refused.
func TestDeleteAccount(t *testing.T) {
	s := startDev(t, true)
	if r := s.login(browse); r.code != 0 {
		t.Fatalf("login: %d %s", r.code, r.stderr)
	}
	tok := strings.TrimSpace(s.run(nil, s.env(), "token").stdout)
	for _, answer := range []string{"no\n", "", "Delete\n"} {
		r := s.run(strings.NewReader(answer), s.env(), "delete-account")
		if r.code != 1 || !strings.Contains(r.stderr, `Type "delete" to confirm`) || !strings.Contains(r.stderr, "nothing was deleted") {
			t.Errorf("answer %q: exit %d %q", answer, r.code, r.stderr)
		}
	}
	if r := s.run(nil, s.env(), "whoami"); r.code != 0 {
		t.Fatalf("the account is gone after refusals: %d %s", r.code, r.stderr)
	}
	r := s.run(strings.NewReader("delete\n"), s.env(), "delete-account")
	if r.code != 0 || !strings.Contains(r.stderr, "The account is deleted") {
		t.Fatalf("delete-account: exit %d %q", r.code, r.stderr)
	}
	if st := s.run(nil, s.env(), "status"); st.code != 1 {
		t.Errorf("status after deletion: exit %d %q", st.code, st.stdout)
	}
	req, _ := http.NewRequest("GET", s.base+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "account_deleted") {
		t.Errorf("the old token: %d %s", resp.StatusCode, b)
	}
	if r := s.run(nil, s.env(), "delete-account", "--yes"); r.code != 1 || !strings.Contains(r.stderr, "sas-login login") {
		t.Errorf("delete-account signed out: exit %d %q", r.code, r.stderr)
	}
}
