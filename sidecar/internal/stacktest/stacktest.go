// Package stacktest runs the dev stack (gateway/devstack: the real gateway
// and the dev identity provider) in process for the sidecar's in-process
// tests, on a clock the test drives, and opens sessions against it with the
// store, clock and browser the test injects.
package stacktest

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devstack"
	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/session"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// Clock is a clock the test moves.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Stack is the dev stack served on 127.0.0.1 for one test.
type Stack struct {
	URL   string
	Clock *Clock
	// Refreshes counts the refresh grants the provider answered.
	Refreshes atomic.Int64
	// Down makes the gateway's /v1/ routes answer 503 while set.
	Down atomic.Bool
	// Userinfo makes the provider keep the profile out of its ID tokens.
	Userinfo Userinfo
}

// Start serves the dev stack (auto-approving sign-ins, users in memory,
// Redis in process) until the test ends; the provider and the gateway's
// verifier run on the returned Stack's Clock.
func Start(t testing.TB) *Stack {
	t.Helper()
	s := &Stack{Clock: NewClock(time.Now())}
	srv := httptest.NewUnstartedServer(nil)
	s.URL = "http://" + srv.Listener.Addr().String()
	cfg, err := config.LoadDev(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	stack, err := devstack.New(context.Background(), devstack.Options{Config: cfg, BaseURL: s.URL, AutoApprove: true, Now: s.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	idp := s.Userinfo.wrap(stack.IdP, stack.Handler)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/dev/idp/oauth/token" {
			_ = r.ParseForm()
			if r.PostForm.Get("grant_type") == "refresh_token" {
				s.Refreshes.Add(1)
			}
		}
		if s.Down.Load() && strings.HasPrefix(r.URL.Path, "/v1/") {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
			return
		}
		idp.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		stack.Close()
	})
	return s
}

// Settings are the local profile's settings pointed at this stack, with a
// free loopback port for the sign-in listener.
func (s *Stack) Settings(t testing.TB) profile.Settings {
	t.Helper()
	env := map[string]string{"SAS_PROFILE": "local", "SAS_ISSUER": s.URL + "/dev/idp", "SAS_GATEWAY_URL": s.URL,
		"SAS_REDIRECT_PORT": e2etest.FreePort(t), "SAS_TOKEN_STORE": "file"}
	var f profile.Flags
	st, err := f.Resolve(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Session opens a session of settings on the stack's clock, with store
// (nil: a token file in a temp dir) and its refresh lock in a temp dir.
func (s *Stack) Session(t testing.TB, settings profile.Settings, store tokens.Store) *session.Session {
	t.Helper()
	dir := tempdir.New(t)
	if store == nil {
		store = tokens.NewFileStore(dir, settings.Profile)
	}
	sess, err := session.Open(session.Options{Settings: settings, Store: store, LockDir: dir, Now: s.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// Browser plays the user's browser: it follows each sign-in URL it is
// asked to open (the provider auto-approves) to the sidecar's listener.
type Browser struct {
	// Opened receives every URL opened.
	Opened chan string
	// Follow: false only records the URL (a user who never comes back).
	Follow bool
	wg     sync.WaitGroup
}

// NewBrowser returns a Browser that follows the URLs it opens; Wait for
// its visits before the test ends.
func NewBrowser() *Browser { return &Browser{Opened: make(chan string, 16), Follow: true} }

// Open implements login.Browser.
func (b *Browser) Open(url string) error {
	select {
	case b.Opened <- url:
	default:
	}
	if !b.Follow {
		return nil
	}
	b.wg.Go(func() { _ = Visit(url) })
	return nil
}

// Visit follows url as a browser does, with a cookie jar (the sign-in
// listener shows its result page only to the browser that brought the
// code), and reads the last page.
func Visit(url string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Timeout: 30 * time.Second, Jar: jar}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// Wait waits for the visits in progress.
func (b *Browser) Wait() { b.wg.Wait() }
