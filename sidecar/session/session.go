// Package session is a signed-in user's session on this machine: a fresh ID
// token on demand (refreshing under a cross-process lock, so sas-login and
// the sidecar never both spend one refresh token), status, sign-in and
// sign-out. Both sas-login and the sidecar daemon build theirs with Open.
package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/login"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// RefreshMargin: an ID token with less than this left is refreshed first.
const RefreshMargin = 60 * time.Second

// ErrNotSignedIn means there is no session for the profile.
var ErrNotSignedIn = errors.New("not signed in: run sas-login login")

// ErrSessionEnded means the provider refused the refresh token (revoked,
// expired, or already spent elsewhere): the local session was cleared.
var ErrSessionEnded = errors.New("the session has ended at the identity provider (signed out or revoked): run sas-login login")

// Options configure a Session.
type Options struct {
	// Settings name the provider, the client and the token store.
	Settings profile.Settings
	// Store keeps the tokens (default: the store Settings.TokenStore names,
	// the OS keyring or the file in LockDir).
	Store tokens.Store
	// LockDir holds the per-user refresh lock and the token file (default:
	// tokens.Dir()).
	LockDir string
	// HTTPClient talks to the provider (default: 30 s timeout).
	HTTPClient *http.Client
	Now        func() time.Time
}

// Session is safe for concurrent use; refreshes are serialised by the
// cross-process lock.
type Session struct {
	o Options

	mu   sync.Mutex
	prov *login.Provider // discovered once
}

// Open returns the session that o.Settings describe.
func Open(o Options) (*Session, error) {
	if o.LockDir == "" {
		dir, err := tokens.Dir()
		if err != nil {
			return nil, err
		}
		o.LockDir = dir
	}
	if o.Store == nil {
		o.Store = tokens.NewKeyringStore(o.Settings.Profile, nil)
		if o.Settings.TokenStore == profile.StoreFile {
			o.Store = tokens.NewFileStore(o.LockDir, o.Settings.Profile)
		}
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Session{o: o}, nil
}

// Settings are the settings the session was opened with.
func (s *Session) Settings() profile.Settings { return s.o.Settings }

// SignIn runs the browser sign-in (login.Run) with this session's provider
// and client, and stores the verified tokens before the browser page says
// "signed in". o says how the sign-in meets the user (browser, progress,
// paste, timeout); with o.Handoffs set, the provider sends the browser to
// the app's own redirect URI (Settings.AppRedirectURI) and the app hands
// the callback URL over on o.Handoffs.
//
// A store that cannot be used (no keyring) fails it before the browser
// opens, not after the user approved.
func (s *Session) SignIn(ctx context.Context, o login.Options) (login.Result, error) {
	if _, err := s.o.Store.Load(ctx); errors.Is(err, tokens.ErrUnavailable) {
		return login.Result{}, err
	}
	st := s.o.Settings
	o.Issuer, o.ClientID, o.Scopes, o.Port = st.Issuer, st.ClientID, st.Scopes, st.Port
	o.AppRedirect = ""
	if o.Handoffs != nil {
		if st.AppRedirectURI == "" {
			return login.Result{}, errors.New("no app redirect URI is configured (SAS_APP_REDIRECT_URI)")
		}
		o.AppRedirect = st.AppRedirectURI
	}
	o.HTTPClient, o.Now = s.o.HTTPClient, s.o.Now
	o.Save = func(ctx context.Context, r login.Result) error { return s.save(ctx, r) }
	return login.Run(ctx, o)
}

// save stores the tokens of a completed sign-in and the profile it learnt
// (from userinfo when the ID token lacks it), under the refresh lock so
// that a refresh in another process cannot overwrite them. The profile
// goes first: a reader that sees the new ID token (signed in) finds its
// profile beside it, and the old token's user is not shown the new one's
// (the profile names its subject).
func (s *Session) save(ctx context.Context, r login.Result) error {
	unlock, err := tokens.Lock(ctx, s.o.LockDir, s.o.Settings.Profile)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.o.Store.SaveProfile(ctx, profileOf(r.Identity)); err != nil {
		return err
	}
	return s.o.Store.Save(ctx, r.Tokens)
}

func profileOf(id login.Identity) tokens.Profile {
	return tokens.Profile{Subject: id.Subject, Email: id.Email, Username: id.Username}
}

// Token returns a stored ID token valid for at least RefreshMargin,
// refreshing it first when needed.
//
// Errors: ErrNotSignedIn, ErrSessionEnded, tokens.ErrUnavailable, or a
// refresh failure that left the session in place (network, provider down).
func (s *Session) Token(ctx context.Context) (tokens.Set, error) {
	set, err := s.load(ctx)
	if err != nil || set.FreshFor(s.o.Now(), RefreshMargin) {
		return set, err
	}
	unlock, err := tokens.Lock(ctx, s.o.LockDir, s.o.Settings.Profile)
	if err != nil {
		return tokens.Set{}, err
	}
	defer unlock()
	// Another process may have refreshed while we waited for the lock: its
	// refresh token is the live one now, ours is spent.
	if set, err = s.load(ctx); err != nil || set.FreshFor(s.o.Now(), RefreshMargin) {
		return set, err
	}
	if set.RefreshToken == "" {
		return tokens.Set{}, errors.New("the ID token has expired and there is no refresh token: run sas-login login")
	}
	return s.refresh(ctx, set)
}

// Refresh gets a new ID token in place of stale, one the gateway refused
// although it looked valid (revoked session, rotated keys, clock skew). If
// another caller already replaced it, that token is returned instead.
//
// Errors: as Token.
func (s *Session) Refresh(ctx context.Context, stale string) (tokens.Set, error) {
	unlock, err := tokens.Lock(ctx, s.o.LockDir, s.o.Settings.Profile)
	if err != nil {
		return tokens.Set{}, err
	}
	defer unlock()
	set, err := s.load(ctx)
	if err != nil || (set.IDToken != stale && set.FreshFor(s.o.Now(), RefreshMargin)) {
		return set, err
	}
	if set.RefreshToken == "" {
		// Refused by the gateway and nothing to refresh with: the session is
		// over, and status must say so.
		if err := s.o.Store.Delete(ctx); err != nil {
			return tokens.Set{}, fmt.Errorf("%w (and clearing the local session failed: %v)", ErrSessionEnded, err)
		}
		return tokens.Set{}, ErrSessionEnded
	}
	return s.refresh(ctx, set)
}

func (s *Session) load(ctx context.Context) (tokens.Set, error) {
	set, err := s.o.Store.Load(ctx)
	if errors.Is(err, tokens.ErrNotFound) {
		return tokens.Set{}, ErrNotSignedIn
	}
	return set, err
}

func (s *Session) refresh(ctx context.Context, set tokens.Set) (tokens.Set, error) {
	prov, err := s.provider(ctx)
	if err != nil {
		return tokens.Set{}, err
	}
	cfg := oauth2.Config{
		ClientID: s.o.Settings.ClientID,
		Endpoint: oauth2.Endpoint{TokenURL: prov.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   s.o.Settings.Scopes,
	}
	hctx := context.WithValue(ctx, oauth2.HTTPClient, s.o.HTTPClient)
	tok, err := cfg.TokenSource(hctx, &oauth2.Token{RefreshToken: set.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || (re.Response != nil && re.Response.StatusCode == http.StatusUnauthorized)) {
			if derr := s.o.Store.Delete(ctx); derr != nil {
				return tokens.Set{}, fmt.Errorf("%w (and clearing the local session failed: %v)", ErrSessionEnded, derr)
			}
			return tokens.Set{}, ErrSessionEnded
		}
		return tokens.Set{}, fmt.Errorf("refresh the session: %w", login.Describe(err))
	}
	// The old refresh token is spent now: whatever happens next, the new
	// one must be kept, or the session is lost.
	if tok.RefreshToken == "" {
		tok.RefreshToken = set.RefreshToken // the provider does not rotate
	}
	next, id, err := login.VerifyTokens(ctx, s.o.HTTPClient, prov, s.o.Settings.ClientID, s.o.Now, tok, "")
	if errors.Is(err, login.ErrNoIDToken) {
		err = errors.New("the provider's answer to a refresh has no ID token, and the gateway needs a fresh one: configure the provider to return an ID token when a refresh token is used (docs/operations.md), then run sas-login login")
	}
	if err != nil {
		// The old ID token is kept (next time it is still near its expiry,
		// or still the stale one: refreshed again).
		keep := tokens.Set{IDToken: set.IDToken, RefreshToken: tok.RefreshToken}
		if serr := s.o.Store.Save(ctx, keep); serr != nil {
			return tokens.Set{}, fmt.Errorf("refresh the session: %w (and keeping the new refresh token failed: %v)", err, serr)
		}
		return tokens.Set{}, fmt.Errorf("refresh the session: %w", err)
	}
	err = s.o.Store.Save(ctx, next)
	if err != nil {
		err = s.o.Store.Save(ctx, next) // once more: a keyring hiccup should not cost the session
	}
	if err != nil {
		return tokens.Set{}, fmt.Errorf("store the refreshed session: %w", err)
	}
	if id.Email == "" || id.Username == "" {
		s.refreshProfile(ctx, prov, tok.AccessToken, id)
	}
	return next, nil
}

// refreshProfile keeps the stored profile current after a refresh whose
// new ID token lacks the email or name: it reads userinfo again with the
// new access token, as sign-in did, so a change made at the provider shows
// as it would in the claims of a token that carries them. What userinfo
// does not say (it failed, or is silent) is kept from the stored profile
// when that one is the same subject's. Best effort, and bounded (10 s,
// only for providers that keep the profile out of the ID token): the
// tokens are stored already, and a profile that could not be written
// leaves the old one, which status shows only for its own subject.
func (s *Session) refreshProfile(ctx context.Context, prov login.Provider, accessToken string, id login.Identity) {
	p := profileOf(login.CompleteIdentity(ctx, s.o.HTTPClient, prov, accessToken, id))
	stored, err := s.o.Store.LoadProfile(ctx)
	if err == nil && stored.Subject == p.Subject {
		p.Email = cmp.Or(p.Email, stored.Email)
		p.Username = cmp.Or(p.Username, stored.Username)
		if p == stored {
			return
		}
	}
	_ = s.o.Store.SaveProfile(ctx, p)
}

func (s *Session) provider(ctx context.Context) (login.Provider, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prov != nil {
		return *s.prov, nil
	}
	p, err := login.Discover(ctx, s.o.HTTPClient, s.o.Settings.Issuer)
	if err != nil {
		return login.Provider{}, err
	}
	s.prov = &p
	return p, nil
}

// Status reports who is signed in, from the stored ID token (verified when
// it was stored), completed by the stored profile of the same subject when
// the token lacks the email or name. Signed in means: a token that is
// still valid, or a refresh token to get one. It does not refresh and makes
// no network call.
func (s *Session) Status(ctx context.Context) (wire.SidecarStatus, error) {
	set, err := s.load(ctx)
	if errors.Is(err, ErrNotSignedIn) {
		return wire.SidecarStatus{}, nil
	}
	if err != nil {
		return wire.SidecarStatus{}, err
	}
	if set.RefreshToken == "" && !set.FreshFor(s.o.Now(), 0) {
		return wire.SidecarStatus{}, nil
	}
	u := UserOf(set.IDToken)
	if u.Email == "" || u.Username == "" {
		// A provider may serve the profile only at userinfo: sign-in kept
		// what it read there.
		p, err := s.o.Store.LoadProfile(ctx)
		switch {
		case err == nil && p.Subject != "" && p.Subject == u.ID:
			u.Email = cmp.Or(u.Email, p.Email)
			u.Username = cmp.Or(u.Username, p.Username)
		case errors.Is(err, tokens.ErrUnavailable):
			return wire.SidecarStatus{}, err
		}
		// None, damaged, or another subject's: the token's claims alone.
	}
	exp := set.Expiry().UTC()
	return wire.SidecarStatus{SignedIn: true, User: &u, ExpiresAt: &exp}, nil
}

// UserOf reads the user of an ID token this program verified and stored.
func UserOf(idToken string) wire.SidecarUser {
	var c struct {
		Sub string `json:"sub"`
		wire.ProfileClaims
	}
	if tokens.StoredClaims(idToken, &c) != nil {
		return wire.SidecarUser{}
	}
	return wire.SidecarUser{ID: c.Sub, Email: c.Email, Username: c.DisplayUsername()}
}

// Logout revokes the refresh token at the provider when its metadata lists
// a revocation endpoint (best effort, bounded), then deletes every stored
// item. Logging out twice is fine. A failed revocation is returned as
// revokeErr; the local session is gone either way.
func (s *Session) Logout(ctx context.Context) (revokeErr error, err error) {
	// Under the refresh lock: a refresh finishing in another process must
	// not write a session back after it was deleted.
	unlock, err := tokens.Lock(ctx, s.o.LockDir, s.o.Settings.Profile)
	if err != nil {
		return nil, err
	}
	defer unlock()
	set, lerr := s.o.Store.Load(ctx)
	switch {
	case lerr == nil && set.RefreshToken != "":
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		revokeErr = s.revoke(rctx, set.RefreshToken)
		cancel()
	case errors.Is(lerr, tokens.ErrUnavailable):
		return nil, lerr
	}
	// Not found, damaged or unreadable: delete what is there all the same.
	return revokeErr, s.o.Store.Delete(ctx)
}

func (s *Session) revoke(ctx context.Context, refreshToken string) error {
	prov, err := s.provider(ctx)
	if err != nil {
		return err
	}
	if prov.RevocationEndpoint == "" {
		return nil
	}
	form := url.Values{"token": {refreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {s.o.Settings.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, prov.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.o.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("revoke at the provider: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke at the provider: status %d", resp.StatusCode)
	}
	return nil
}
