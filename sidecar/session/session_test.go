package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/devidp"
	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
	"github.com/signals-sorcery/sas/sidecar/login"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/session"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

type fixture struct {
	t       *testing.T
	idp     *devidp.Provider
	url     string
	clock   *stacktest.Clock
	dir     string
	revokes atomic.Int64
	// noIDTokenOnRefresh makes the provider leave the ID token out of its
	// answers to refresh grants (some providers do).
	noIDTokenOnRefresh atomic.Bool
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: stacktest.NewClock(time.Now()), dir: tempdir.New(t)}
	srv := httptest.NewUnstartedServer(nil)
	p, err := devidp.New(devidp.Options{Issuer: "http://" + srv.Listener.Addr().String(), AutoApprove: true, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Handler()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/oauth/revoke") {
			f.revokes.Add(1)
		}
		if strings.HasSuffix(r.URL.Path, "/oauth/token") && f.noIDTokenOnRefresh.Load() {
			_ = r.ParseForm()
			if r.PostForm.Get("grant_type") == "refresh_token" {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				var m map[string]any
				_ = json.Unmarshal(rec.Body.Bytes(), &m)
				delete(m, "id_token")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(rec.Code)
				_ = json.NewEncoder(w).Encode(m)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	f.idp, f.url = p, srv.URL
	return f
}

func (f *fixture) session(store tokens.Store) *session.Session {
	s, err := session.Open(session.Options{Settings: profile.Settings{Profile: "local", Issuer: f.url, ClientID: "sas-local",
		Scopes: []string{"openid", "email", "offline_access"}}, Store: store, LockDir: f.dir, Now: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// signIn obtains a real token set from the IdP (code flow with PKCE).
func (f *fixture) signIn(t *testing.T) tokens.Set {
	t.Helper()
	verifier := strings.Repeat("v", 50)
	code := authorize(t, f.url, verifier)
	resp, err := http.PostForm(f.url+"/oauth/token", url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {"http://127.0.0.1:43110/callback"}, "client_id": {"sas-local"}, "code_verifier": {verifier}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if err := jsonDecode(resp, &body); err != nil || body.IDToken == "" {
		t.Fatalf("token: %v %+v", err, body)
	}
	return tokens.Set{IDToken: body.IDToken, RefreshToken: body.RefreshToken}
}

func TestTokenReturnsFreshTokenWithoutRefresh(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	set := f.signIn(t)
	_ = store.Save(context.Background(), set)
	got, err := f.session(store).Token(context.Background())
	if err != nil || got.IDToken != set.IDToken || f.idp.RefreshGrants() != 0 {
		t.Fatalf("Token = %v, %v; refresh grants %d", got.IDToken == set.IDToken, err, f.idp.RefreshGrants())
	}
}

// TestTokenRefreshesNearExpiry: under 60 s left → one refresh, the new set
// is stored (rotated refresh token included).
func TestTokenRefreshesNearExpiry(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	set := f.signIn(t)
	_ = store.Save(context.Background(), set)
	f.clock.Advance(time.Hour - 59*time.Second)
	got, err := f.session(store).Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.IDToken == set.IDToken || got.RefreshToken == set.RefreshToken || !got.Expiry().After(f.clock.Now().Add(time.Minute)) {
		t.Errorf("not refreshed: %+v", got)
	}
	stored, _ := store.Load(context.Background())
	if stored.IDToken != got.IDToken || stored.RefreshToken != got.RefreshToken {
		t.Error("refreshed set not stored")
	}
	if f.idp.RefreshGrants() != 1 {
		t.Errorf("refresh grants = %d", f.idp.RefreshGrants())
	}
}

// TestConcurrentRefreshSpendsOnce: many sessions (as many processes would)
// sharing one store refresh once: the lock plus the re-read after it.
func TestConcurrentRefreshSpendsOnce(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	_ = store.Save(context.Background(), f.signIn(t))
	f.clock.Advance(time.Hour)
	var wg sync.WaitGroup
	for range 10 {
		s := f.session(store) // separate sessions: no shared memory but the store and the lock
		wg.Go(func() {
			if _, err := s.Token(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := f.idp.RefreshGrants(); n != 1 {
		t.Errorf("refresh grants = %d, want 1", n)
	}
}

// TestRevokedRefreshClearsSession: a refresh the provider refuses ends the
// session and says to sign in again.
func TestRevokedRefreshClearsSession(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	set := f.signIn(t)
	_ = store.Save(context.Background(), set)
	resp, err := http.PostForm(f.url+"/oauth/revoke", url.Values{"token": {set.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f.clock.Advance(time.Hour)
	_, err = f.session(store).Token(context.Background())
	if !errors.Is(err, session.ErrSessionEnded) || !strings.Contains(err.Error(), "sas-login login") {
		t.Fatalf("err = %v", err)
	}
	if _, err := store.Load(context.Background()); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("session not cleared: %v", err)
	}
	if _, err := f.session(store).Token(context.Background()); !errors.Is(err, session.ErrNotSignedIn) {
		t.Errorf("after clearing: %v", err)
	}
}

func TestStatusAndLogout(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	s := f.session(store)
	if st, err := s.Status(context.Background()); err != nil || st.SignedIn || st.User != nil {
		t.Fatalf("status before sign-in: %+v %v", st, err)
	}
	set := f.signIn(t)
	_ = store.Save(context.Background(), set)
	st, err := s.Status(context.Background())
	if err != nil || !st.SignedIn || st.User == nil || st.User.Email != "dev@example.com" || !strings.HasPrefix(st.User.ID, "user_") || st.ExpiresAt == nil {
		t.Fatalf("status = %+v, %v", st, err)
	}
	for range 2 {
		if revokeErr, err := s.Logout(context.Background()); err != nil || revokeErr != nil {
			t.Fatalf("logout: %v / %v", revokeErr, err)
		}
	}
	if f.revokes.Load() != 1 {
		t.Errorf("revocations = %d, want 1 (the second logout has nothing to revoke)", f.revokes.Load())
	}
	// The revoked refresh token no longer works at the provider.
	resp, _ := http.PostForm(f.url+"/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {set.RefreshToken}, "client_id": {"sas-local"}})
	if resp.StatusCode != 400 {
		t.Errorf("revoked refresh token: %d", resp.StatusCode)
	}
	resp.Body.Close()
	if st, _ := s.Status(context.Background()); st.SignedIn {
		t.Error("still signed in after logout")
	}
}

// TestLogoutClearsDamagedStore: the message for a damaged token file says
// to run logout, so logout must work on it.
func TestLogoutClearsDamagedStore(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	if err := os.WriteFile(filepath.Join(f.dir, "tokens-local.json"), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Load(context.Background()); err == nil {
		t.Fatal("damaged file loaded")
	}
	if _, err := f.session(store).Logout(context.Background()); err != nil {
		t.Fatalf("logout: %v", err)
	}
	if _, err := os.Stat(filepath.Join(f.dir, "tokens-local.json")); !os.IsNotExist(err) {
		t.Errorf("damaged file still there: %v", err)
	}
}

// TestRefreshWithoutIDToken: a provider that answers a refresh without a
// new ID token gets a clear error that says what to configure, and the
// session (its new refresh token) is kept.
func TestRefreshWithoutIDToken(t *testing.T) {
	f := newFixture(t)
	store := tokens.NewFileStore(f.dir, "local")
	_ = store.Save(context.Background(), f.signIn(t))
	f.noIDTokenOnRefresh.Store(true)
	f.clock.Advance(time.Hour)
	_, err := f.session(store).Token(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no ID token") || !strings.Contains(err.Error(), "configure the provider") {
		t.Fatalf("err = %v", err)
	}
	if st, _ := f.session(store).Status(context.Background()); !st.SignedIn {
		t.Error("the session was lost")
	}
}

// TestAppSignInNeedsItsRedirect: a sign-in handed off to the app with no
// app redirect URI configured fails at once (it once fell back to the
// loopback flow, and the app's hand-off waited for the timeout).
func TestAppSignInNeedsItsRedirect(t *testing.T) {
	f := newFixture(t)
	s := f.session(tokens.NewFileStore(f.dir, "local"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := s.SignIn(ctx, login.Options{Handoffs: make(chan login.Handoff)})
	if err == nil || !strings.Contains(err.Error(), "SAS_APP_REDIRECT_URI") {
		t.Errorf("SignIn without an app redirect URI: %v", err)
	}
}
