package daemon_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/daemon"
	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/session"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture is a daemon on the in-process dev stack, with a token file, the
// stack's clock and a browser that follows the sign-in URL.
type fixture struct {
	t        *testing.T
	stack    *stacktest.Stack
	settings profile.Settings
	store    tokens.Store
	browser  *stacktest.Browser
	d        *daemon.Daemon
	logs     *e2etest.Buffer

	mu    sync.Mutex
	notes []daemon.Notification
}

func newFixture(t *testing.T, opts ...func(*daemon.Options)) *fixture {
	t.Helper()
	f := &fixture{t: t, stack: stacktest.Start(t), browser: stacktest.NewBrowser(), logs: &e2etest.Buffer{}}
	f.settings = f.stack.Settings(t)
	f.store = tokens.NewFileStore(tempdir.New(t), "local")
	o := daemon.Options{
		Session:       f.stack.Session(t, f.settings, f.store),
		Browser:       f.browser,
		WatchInterval: -1,
		Logger:        slog.New(slog.NewJSONHandler(f.logs, nil)),
	}
	for _, opt := range opts {
		opt(&o)
	}
	f.d = daemon.New(o)
	f.d.OnNotify(func(n daemon.Notification) {
		f.mu.Lock()
		f.notes = append(f.notes, n)
		f.mu.Unlock()
	})
	t.Cleanup(func() {
		f.d.Close()
		f.browser.Wait()
	})
	return f
}

// methods returns the notifications so far, by method.
func (f *fixture) methods() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, n := range f.notes {
		if n.Method == "authChanged" {
			out = append(out, "authChanged:"+map[bool]string{true: "in", false: "out"}[n.Params.(daemon.AuthChanged).SignedIn])
		} else {
			out = append(out, n.Method)
		}
	}
	return out
}

func (f *fixture) signIn() {
	f.t.Helper()
	st, err := f.d.Login(context.Background(), daemon.LoginOptions{})
	if err != nil || !st.SignedIn {
		f.t.Fatalf("sign-in: %+v %v", st, err)
	}
}

// call makes a gateway call through the daemon's Transport.
func (f *fixture) call(method, path string, header http.Header, body string) (int, string, error) {
	f.t.Helper()
	req, err := http.NewRequest(method, path, strings.NewReader(body))
	if err != nil {
		f.t.Fatal(err)
	}
	if header != nil {
		req.Header = header
	}
	resp, err := f.d.Transport().RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (f *fixture) storedToken() string {
	f.t.Helper()
	set, err := f.store.Load(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return set.IDToken
}

func code(err error) string {
	if we, ok := errors.AsType[*wire.Error](err); ok {
		return we.Code
	}
	return ""
}

// TestSignInCallSignOut: two sign-ins at once share one browser visit; the
// gateway gets the user's token and never the caller's credentials; every
// change is announced.
func TestSignInCallSignOut(t *testing.T) {
	f := newFixture(t)
	if st, err := f.d.Status(context.Background()); err != nil || st.SignedIn {
		t.Fatalf("status before: %+v %v", st, err)
	}
	if _, _, err := f.call("GET", "/v1/me", nil, ""); code(err) != wire.CodeNotSignedIn {
		t.Errorf("a call before sign-in: %v", err)
	}
	// The second sign-in joins the first: the browser is followed only
	// after both have started.
	f.browser.Follow = false
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(f.signIn)
	}
	if err := stacktest.Visit(<-f.browser.Opened); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := len(f.browser.Opened); n != 0 {
		t.Errorf("the browser opened %d more times for two joined sign-ins", n)
	}
	// The caller's own Authorization and Cookie are dropped, not forwarded:
	// the gateway sees the user's token.
	status, body, err := f.call("GET", "/v1/me", http.Header{"Authorization": {"Bearer not-the-users"}, "Cookie": {"session=x"}}, "")
	if err != nil || status != 200 || !strings.Contains(body, `"email":"dev@example.com"`) {
		t.Fatalf("/v1/me: %d %s %v", status, body, err)
	}
	if st, err := f.d.Logout(context.Background()); err != nil || st.SignedIn {
		t.Fatalf("logout: %+v %v", st, err)
	}
	if _, _, err := f.call("GET", "/v1/me", nil, ""); code(err) != wire.CodeNotSignedIn {
		t.Errorf("a call after logout: %v", err)
	}
	if got, want := strings.Join(f.methods(), " "), "loginStarted authChanged:in authChanged:out"; got != want {
		t.Errorf("notifications %q, want %q", got, want)
	}
	if token := f.logs.String(); strings.Contains(token, "eyJ") {
		t.Errorf("a JWT in the daemon's log:\n%s", token)
	}
}

// TestRefreshIsDrivenByTheClock: the token is used as it is until under a
// minute of it is left; then concurrent calls share one refresh, and later
// calls use the new token.
func TestRefreshIsDrivenByTheClock(t *testing.T) {
	f := newFixture(t)
	f.signIn()
	first := f.storedToken()
	f.stack.Clock.Advance(30 * time.Minute)
	if status, _, err := f.call("GET", "/v1/me", nil, ""); err != nil || status != 200 {
		t.Fatalf("call at 30 min: %d %v", status, err)
	}
	if n := f.stack.Refreshes.Load(); n != 0 || f.storedToken() != first {
		t.Fatalf("%d refreshes with 30 min left", n)
	}
	f.stack.Clock.Advance(29*time.Minute + 30*time.Second) // 30 s left
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if status, body, err := f.call("GET", "/v1/me", nil, ""); err != nil || status != 200 {
				t.Errorf("call near expiry: %d %s %v", status, body, err)
			}
		})
	}
	wg.Wait()
	if n := f.stack.Refreshes.Load(); n != 1 {
		t.Errorf("%d refreshes for 8 concurrent calls near expiry, want 1", n)
	}
	second := f.storedToken()
	if second == first {
		t.Fatal("the token was not replaced")
	}
	if status, _, err := f.call("GET", "/v1/me", nil, ""); err != nil || status != 200 || f.stack.Refreshes.Load() != 1 {
		t.Errorf("the call after: %d %v, %d refreshes", status, err, f.stack.Refreshes.Load())
	}
	if st, _ := f.d.Status(context.Background()); st.ExpiresAt == nil || !st.ExpiresAt.After(f.stack.Clock.Now().Add(50*time.Minute)) {
		t.Errorf("status after the refresh: %+v", st)
	}
}

// TestRefreshAndRetryOn401: a token the gateway refuses though it looks
// valid is refreshed once and the call retried with the same body; when the
// refresh is refused too, the session ends and says so.
func TestRefreshAndRetryOn401(t *testing.T) {
	f := newFixture(t)
	f.signIn()
	ctx := context.Background()
	set, _ := f.store.Load(ctx)
	damaged := set
	damaged.IDToken = set.IDToken[:len(set.IDToken)-6] + "AAAAAA" // the signature
	if err := f.store.Save(ctx, damaged); err != nil {
		t.Fatal(err)
	}
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"retried with its body"}]}`
	status, answer, err := f.call("POST", "/v1/chat/completions", http.Header{"Content-Type": {"application/json"}}, body)
	if err != nil || status != 200 || !strings.Contains(answer, "retried with its body") {
		t.Fatalf("after a 401: %d %s %v", status, answer, err)
	}
	if n := f.stack.Refreshes.Load(); n != 1 || f.storedToken() == damaged.IDToken {
		t.Errorf("%d refreshes; refused token still stored: %v", n, f.storedToken() == damaged.IDToken)
	}
	if !strings.Contains(f.logs.String(), "refreshing the session and retrying once") {
		t.Error("the retry is not logged")
	}

	// Refused again, and the refresh token is no good any more: signed out.
	damaged.RefreshToken = "rt_revoked"
	if err := f.store.Save(ctx, damaged); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.call("GET", "/v1/me", nil, ""); code(err) != wire.CodeNotSignedIn {
		t.Errorf("a refused refresh: %v, want not_signed_in", err)
	}
	if _, err := f.store.Load(ctx); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("the ended session is still stored: %v", err)
	}
	if m := f.methods(); m[len(m)-1] != "authChanged:out" {
		t.Errorf("notifications %v: the end of the session is not announced", m)
	}
}

// TestTransportRefusals: the caller's credentials and hop-by-hop headers
// never reach the gateway; paths outside /v1/, bodies over 1 MiB and an
// unreachable gateway are wire errors, with no token in any message; a
// redirect from the gateway is returned, never followed with the token.
func TestTransportRefusals(t *testing.T) {
	redirects := 0
	var seen http.Header
	f := newFixture(t, func(o *daemon.Options) {
		o.Upstream = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path == "/v1/me" {
				seen = r.Header.Clone()
			}
			if r.URL.Path == "/v1/moved" {
				redirects++
				return &http.Response{StatusCode: 307, Header: http.Header{"Location": {"https://elsewhere.example/steal"}},
					Body: http.NoBody, Request: r}, nil
			}
			if r.URL.Path == "/v1/down" {
				return nil, errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
			}
			return http.DefaultTransport.RoundTrip(r)
		})
	})
	f.signIn()
	token := f.storedToken()
	status, _, err := f.call("GET", "/v1/me", http.Header{"Authorization": {"Bearer junk"}, "Cookie": {"a=b"}, "Origin": {"https://evil.example"},
		"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Proxy-Authorization": {"Basic eA=="}, "X-App": {"kept"},
		"X-Forwarded-For": {"6.6.6.6"}, "Forwarded": {"for=6.6.6.6"}, "Expect": {"100-continue"}}, "")
	if err != nil || status != 200 {
		t.Fatalf("/v1/me: %d %v", status, err)
	}
	if seen.Get("Authorization") != "Bearer "+token || seen.Get("X-App") != "kept" {
		t.Errorf("the gateway saw Authorization %.20q…, X-App %q", seen.Get("Authorization"), seen.Get("X-App"))
	}
	for _, h := range []string{"Cookie", "Origin", "Connection", "X-Hop", "Proxy-Authorization", "X-Forwarded-For", "Forwarded", "Expect"} {
		if seen.Get(h) != "" {
			t.Errorf("%s reached the gateway", h)
		}
	}
	for _, p := range []string{"/metrics", "/v1/../metrics", "//evil.example/v1/me", "/v1/me#x", "/v1/%2e%2e/healthz"} {
		req, err := http.NewRequest("GET", p, nil)
		if err != nil {
			continue // not even a URL: refused before the Transport
		}
		if _, err := f.d.Transport().RoundTrip(req); code(err) != wire.CodeBadRequest {
			t.Errorf("path %q: %v, want bad_request", p, err)
		}
	}
	big := bytes.Repeat([]byte("a"), session.MaxBodyBytes+1)
	if _, _, err := f.call("POST", "/v1/chat/completions", nil, string(big)); code(err) != wire.CodePayloadTooLarge {
		t.Errorf("a body over 1 MiB: %v", err)
	}
	status, _, err = f.call("GET", "/v1/moved", nil, "")
	if err != nil || status != 307 || redirects != 1 {
		t.Errorf("a redirect: %d %v (%d upstream calls)", status, err, redirects)
	}
	_, _, err = f.call("GET", "/v1/down", nil, "")
	if code(err) != wire.CodeGatewayUnreachable || !strings.Contains(wire.ErrorMessage(err), "connection refused") || strings.Contains(err.Error(), token) {
		t.Errorf("an unreachable gateway: %v", err)
	}
}

// TestCloseEndsTheSignIn: a sign-in nobody completes outlives the caller
// that started it (a second caller joins it, no second browser) and ends
// when the daemon closes, with nothing left running.
func TestCloseEndsTheSignIn(t *testing.T) {
	f := newFixture(t)
	f.browser.Follow = false
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := f.d.Login(ctx, daemon.LoginOptions{})
		first <- err
	}()
	<-f.browser.Opened
	cancel()
	if err := <-first; code(err) != wire.CodeCancelled {
		t.Errorf("the caller that stopped waiting: %v", err)
	}
	second := make(chan error, 1)
	go func() {
		_, err := f.d.Login(context.Background(), daemon.LoginOptions{})
		second <- err
	}()
	// Closing ends the flow the second caller joined (or refuses it, if it
	// comes after): cancelled either way, and no second browser; once Close
	// returns, the flow's listener is gone.
	f.d.Close()
	if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(f.settings.Port)); err != nil {
		t.Errorf("the sign-in listener outlived Close: %v", err)
	} else {
		ln.Close()
	}
	if err := <-second; code(err) != wire.CodeCancelled {
		t.Errorf("the second caller after Close: %v", err)
	}
	if n := len(f.browser.Opened); n != 0 {
		t.Errorf("the browser opened %d more times", n)
	}
	if _, err := f.d.Login(context.Background(), daemon.LoginOptions{}); code(err) != wire.CodeCancelled {
		t.Errorf("a sign-in after Close: %v", err)
	}
}

// TestAppRedirectHandoff: a sign-in through the app's URI takes the
// callback from CompleteLogin; a URL of another attempt is refused and the
// attempt goes on.
func TestAppRedirectHandoff(t *testing.T) {
	f := newFixture(t)
	f.browser.Follow = false
	if _, err := f.d.CompleteLogin(context.Background(), "sas://callback?code=x&state=y"); code(err) != wire.CodeBadRequest {
		t.Errorf("completeLogin with no sign-in waiting: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.d.Login(context.Background(), daemon.LoginOptions{App: true})
		done <- err
	}()
	authURL := <-f.browser.Opened
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	noFollow.CloseIdleConnections()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, f.settings.AppRedirectURI+"?") {
		t.Fatalf("the provider sent the browser to %q", callback)
	}
	for _, bad := range []string{strings.Replace(callback, "state=", "state=x", 1), strings.Replace(callback, "sas://", "evil://", 1)} {
		if _, err := f.d.CompleteLogin(context.Background(), bad); code(err) != wire.CodeBadRequest {
			t.Errorf("completeLogin(%q): %v", bad, err)
		}
	}
	st, err := f.d.CompleteLogin(context.Background(), callback)
	if err != nil || !st.SignedIn || st.User.Email != "dev@example.com" {
		t.Fatalf("completeLogin: %+v %v", st, err)
	}
	if err := <-done; err != nil {
		t.Errorf("login: %v", err)
	}
}

// TestSignInFailureIsAWireError: a sign-in refused at the provider answers
// sign_in_failed with the provider's reason, and no session.
func TestSignInFailureIsAWireError(t *testing.T) {
	f := newFixture(t)
	f.browser.Follow = false
	done := make(chan error, 1)
	go func() {
		_, err := f.d.Login(context.Background(), daemon.LoginOptions{})
		done <- err
	}()
	authURL := <-f.browser.Opened
	u := authURL[strings.Index(authURL, "state=")+len("state="):]
	state := u[:strings.IndexAny(u+"&", "&")]
	if err := stacktest.Visit(f.settings.RedirectURL() + "?error=access_denied&error_description=The+user+said+no&state=" + state); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if code(err) != wire.CodeSignInFailed || !strings.Contains(wire.ErrorMessage(err), "access_denied") {
		t.Errorf("a refused sign-in: %v", err)
	}
	if st, _ := f.d.Status(context.Background()); st.SignedIn {
		t.Error("signed in after a refused sign-in")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestDeleteAccount: the account is deleted at the gateway (and at the
// identity provider: the refresh token stops working), the daemon signs
// out and says so; the old ID token is refused; signing up again with the
// same email makes a new account.
func TestDeleteAccount(t *testing.T) {
	f := newFixture(t)
	f.signIn()
	old := f.storedToken()
	_, before, _ := f.call("GET", "/v1/me", nil, "")
	st, err := f.d.DeleteAccount(context.Background())
	if err != nil || st.SignedIn {
		t.Fatalf("DeleteAccount: %+v %v", st, err)
	}
	if m := f.methods(); m[len(m)-1] != "authChanged:out" {
		t.Errorf("notifications %v: the sign-out is not announced", m)
	}
	req, _ := http.NewRequest("GET", f.settings.Gateway+"/v1/me", nil)
	req.Header.Set("Authorization", "Bearer "+old)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), `"account_deleted"`) {
		t.Errorf("the old token after deletion: %d %s", resp.StatusCode, b)
	}
	if _, err := f.d.DeleteAccount(context.Background()); code(err) != wire.CodeNotSignedIn {
		t.Errorf("DeleteAccount signed out: %v", err)
	}
	f.signIn()
	if _, after, _ := f.call("GET", "/v1/me", nil, ""); after == before || !strings.Contains(after, "dev@example.com") {
		t.Errorf("signing up again: before %s, after %s", before, after)
	}
}
