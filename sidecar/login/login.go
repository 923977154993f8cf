// Package login runs the OAuth 2.0 Authorization Code + PKCE sign-in of a
// native app (RFC 8252): a loopback listener on 127.0.0.1 that lives only for
// the attempt, the system browser (or a URL pasted back from a browser on
// another machine), and an ID token verified before anyone stores it.
// sas-login and the sidecar daemon both run it.
package login

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// ErrCancelled ends a sign-in whose context was cancelled (Ctrl-C, the
// sidecar closing).
var ErrCancelled = errors.New("sign-in cancelled")

// DefaultTimeout bounds a sign-in attempt.
const DefaultTimeout = 5 * time.Minute

// Options configure a sign-in.
type Options struct {
	Issuer   string
	ClientID string
	Scopes   []string
	Port     int // loopback port of the registered redirect URI
	// NoBrowser prints the URL without opening a browser and also accepts
	// the full redirect URL pasted on Paste.
	NoBrowser bool
	Paste     io.Reader
	Browser   Browser   // nil: the system browser
	Progress  io.Writer // human progress lines (stderr); nil: discarded
	Timeout   time.Duration
	// Save, when set, stores a verified result before the browser page says
	// "signed in"; its failure fails the sign-in.
	Save func(ctx context.Context, r Result) error
	// HTTPClient talks to the provider (discovery, token, JWKS).
	HTTPClient *http.Client
	Now        func() time.Time
	// AppRedirect, when set, is the app's own redirect URI (sas://callback,
	// registered at the provider): no loopback listener runs, and the
	// callback URLs the OS hands the app arrive on Handoffs instead.
	AppRedirect string
	Handoffs    <-chan Handoff
}

// Handoff is a callback URL the app received (sas://callback?…) and passed
// on; Run answers on Done: nil when it was this attempt's and the attempt
// goes on to completion, an error (the state is another attempt's, it is
// not a callback URL) when it was refused and the attempt goes on waiting.
type Handoff struct {
	URL  string
	Done chan<- error
}

// Identity is who signed in, from the verified ID token.
type Identity struct {
	Subject, Email, Username string
}

// Result is a completed sign-in.
type Result struct {
	Tokens   tokens.Set
	Identity Identity
	Provider Provider
}

// Run signs the user in. The listener is up before the browser opens and
// gone when Run returns, whatever happened.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Browser == nil {
		o.Browser = SystemBrowser{}
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	prov, err := Discover(ctx, o.HTTPClient, o.Issuer)
	if err != nil {
		return Result{}, err
	}
	if o.AppRedirect != "" {
		return runHandoff(ctx, o, prov)
	}
	ln, err := listen(o.Port)
	if err != nil {
		return Result{}, err
	}
	redirectURI := "http://127.0.0.1:" + strconv.Itoa(o.Port) + "/callback"
	cfg := oauth2.Config{
		ClientID:    o.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: prov.AuthorizationEndpoint, TokenURL: prov.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURI,
		Scopes:      o.Scopes,
	}
	state, nonce, verifier := random(), random(), oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	cb := newCallback(state, "127.0.0.1:"+strconv.Itoa(o.Port))
	srv := &http.Server{Handler: cb, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	defer func() {
		// Let the browser fetch the result page, then let the response
		// flush: Close would cut it mid-write and the browser would retry
		// against a closed port.
		cb.waitPageShown(3 * time.Second)
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
		// The port is free only once Serve has returned (a blocked Accept
		// holds the socket open): a sign-in started right after this one
		// must be able to listen.
		<-served
	}()

	if o.NoBrowser {
		fmt.Fprintf(o.Progress, "Open this URL in a browser (on any machine) to sign in:\n\n  %s\n\n", authURL)
		fmt.Fprintf(o.Progress, "Then either let it return to this machine, or paste the full URL of the page it lands on (http://127.0.0.1:%d/callback?…) here and press Enter.\n", o.Port)
		if o.Paste != nil {
			go cb.readPasted(ctx, o.Paste, o.Progress)
		}
	} else {
		fmt.Fprintln(o.Progress, "Opening browser…")
		fmt.Fprintf(o.Progress, "If it does not open, visit:\n\n  %s\n\n", authURL)
		if err := o.Browser.Open(authURL); err != nil {
			fmt.Fprintf(o.Progress, "Could not open a browser (%v): open the URL above yourself.\n", err)
		}
	}
	fmt.Fprintln(o.Progress, "Waiting for sign-in (Ctrl-C to cancel)…")

	var params url.Values
	select {
	case params = <-cb.params:
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v waiting for sign-in", o.Timeout)
		} else {
			err = ErrCancelled
		}
		cb.finish(Result{}, err)
		return Result{}, err
	}
	res, err := complete(ctx, o, prov, cfg, params, state, nonce, verifier)
	cb.finish(res, err)
	return res, err
}

// runHandoff is the sign-in whose callback goes to the app (a custom
// scheme): the browser opens once, and the URLs the app hands over are
// checked exactly as the loopback listener checks its callbacks.
func runHandoff(ctx context.Context, o Options, prov Provider) (Result, error) {
	cfg := oauth2.Config{
		ClientID:    o.ClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: prov.AuthorizationEndpoint, TokenURL: prov.TokenEndpoint, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: o.AppRedirect,
		Scopes:      o.Scopes,
	}
	state, nonce, verifier := random(), random(), oauth2.GenerateVerifier()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
	want, err := url.Parse(o.AppRedirect)
	if err != nil {
		return Result{}, fmt.Errorf("the app's redirect URI %q is not a URL", o.AppRedirect)
	}
	fmt.Fprintln(o.Progress, "Opening browser…")
	if err := o.Browser.Open(authURL); err != nil {
		fmt.Fprintf(o.Progress, "Could not open a browser (%v).\n", err)
	}
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return Result{}, fmt.Errorf("timed out after %v waiting for sign-in", o.Timeout)
			}
			return Result{}, ErrCancelled
		case h := <-o.Handoffs:
			u, err := url.Parse(h.URL)
			switch {
			case err != nil || u.Scheme != want.Scheme || u.Host != want.Host || u.Path != want.Path:
				h.Done <- fmt.Errorf("not this sign-in's callback: want a %s URL", o.AppRedirect)
				continue
			case subtle.ConstantTimeCompare([]byte(u.Query().Get("state")), []byte(state)) != 1:
				h.Done <- errors.New("this callback belongs to another sign-in attempt (its state does not match)")
				continue
			}
			h.Done <- nil
			return complete(ctx, o, prov, cfg, u.Query(), state, nonce, verifier)
		}
	}
}

// complete checks the callback parameters, redeems the code and verifies
// the ID token.
func complete(ctx context.Context, o Options, prov Provider, cfg oauth2.Config, q url.Values, state, nonce, verifier string) (Result, error) {
	// State first, errors included (RFC 6749 §4.1.2.1: error responses
	// carry it): any web page can send the browser to our callback, and its
	// text must not reach the terminal as if the provider had said it.
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		return Result{}, errors.New("sign-in failed: the callback's state does not match this attempt (a stale tab or a forged request); nothing was stored")
	}
	if e := q.Get("error"); e != "" {
		msg := "sign-in failed: " + Printable(e, 64)
		if d := q.Get("error_description"); d != "" {
			msg += ": " + Printable(d, 300)
		}
		return Result{}, errors.New(msg)
	}
	code := q.Get("code")
	if code == "" {
		return Result{}, errors.New("sign-in failed: the callback has no authorization code")
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.HTTPClient)
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		return Result{}, fmt.Errorf("sign-in failed: redeem the authorization code: %w", Describe(err))
	}
	set, id, err := VerifyTokens(ctx, o.HTTPClient, prov, o.ClientID, o.Now, tok, nonce)
	if err != nil {
		return Result{}, err
	}
	if id.Email == "" || id.Username == "" {
		// The OpenID default: the profile at the userinfo endpoint, not in
		// the ID token. Shown to the user; the gateway still needs the
		// claims in the ID token (docs/operations.md says how).
		id = CompleteIdentity(ctx, o.HTTPClient, prov, tok.AccessToken, id)
	}
	res := Result{Tokens: set, Identity: id, Provider: prov}
	// Store before the browser is told "signed in".
	if o.Save != nil {
		if err := o.Save(ctx, res); err != nil {
			return Result{}, fmt.Errorf("signed in, but the tokens could not be stored: %w", err)
		}
	}
	return res, nil
}

// ErrNoIDToken means a token response carried no ID token.
var ErrNoIDToken = errors.New("the provider returned no ID token (is the openid scope granted?)")

// CompleteIdentity fills the email and name that the ID token lacks from the
// provider's userinfo endpoint, with the access token of the same token
// response (best effort, bounded to 10 s: on any failure, id as it is).
// The answer is used only if it is about the same subject (OpenID Connect
// Core §5.3.2). Sign-in and refresh both call it.
func CompleteIdentity(ctx context.Context, client *http.Client, prov Provider, accessToken string, id Identity) Identity {
	if prov.UserinfoEndpoint == "" || accessToken == "" {
		return id
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, prov.UserinfoEndpoint, nil)
	if err != nil {
		return id
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return id
	}
	defer resp.Body.Close()
	var c struct {
		Sub string `json:"sub"`
		wire.ProfileClaims
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&c) != nil || c.Sub != id.Subject {
		return id
	}
	id.Email = cmp.Or(id.Email, c.Email)
	id.Username = cmp.Or(id.Username, c.DisplayUsername())
	return id
}

// VerifyTokens checks the ID token of a token response (signature against
// the provider's JWKS, iss, aud = clientID, exp, and nonce when non-empty)
// and returns what to store. Refreshes reuse it with an empty nonce.
func VerifyTokens(ctx context.Context, client *http.Client, prov Provider, clientID string, now func() time.Time, tok *oauth2.Token, nonce string) (tokens.Set, Identity, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return tokens.Set{}, Identity{}, ErrNoIDToken
	}
	ctx = oidc.ClientContext(ctx, client)
	v := oidc.NewVerifier(prov.Issuer, oidc.NewRemoteKeySet(ctx, prov.JWKSURI), &oidc.Config{ClientID: clientID, Now: now})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return tokens.Set{}, Identity{}, fmt.Errorf("the ID token failed verification: %w", err)
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return tokens.Set{}, Identity{}, errors.New("the ID token's nonce does not match this sign-in; nothing was stored")
	}
	var c wire.ProfileClaims
	_ = idt.Claims(&c)
	id := Identity{Subject: idt.Subject, Email: c.Email, Username: c.DisplayUsername()}
	return tokens.Set{IDToken: raw, RefreshToken: tok.RefreshToken}, id, nil
}

// Describe turns an oauth2 error into its OAuth error code and description,
// or just the HTTP status — never the response body, which a provider (or a
// proxy's HTML error page) may fill with anything.
func Describe(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return err
	}
	switch {
	case re.ErrorCode != "" && re.ErrorDescription != "":
		return fmt.Errorf("%s: %s", Printable(re.ErrorCode, 64), Printable(re.ErrorDescription, 300))
	case re.ErrorCode != "":
		return errors.New(Printable(re.ErrorCode, 64))
	case re.Response != nil:
		return fmt.Errorf("the provider answered HTTP %d", re.Response.StatusCode)
	}
	return errors.New("the provider refused the request")
}

// Printable keeps at most max runes of s, without control characters, so
// text from a provider or a web page cannot redraw the user's terminal.
func Printable(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteString("…")
			break
		}
		if unicode.IsControl(r) {
			r = ' '
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// listen binds the loopback redirect port, and says how to pick another.
func listen(port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("port %d on 127.0.0.1 is already in use (another sign-in running?): free it, or use another registered redirect port with --port or SAS_REDIRECT_PORT", port)
	}
	if err != nil {
		// Windows reports a busy port as WSAEADDRINUSE, which EADDRINUSE
		// does not match: the hint goes with every failure.
		return nil, fmt.Errorf("cannot listen on 127.0.0.1:%d (%v): if it is in use, free it or pick another registered redirect port with --port or SAS_REDIRECT_PORT", port, err)
	}
	return ln, nil
}

// random returns 256 bits of randomness, base64url-encoded.
func random() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// readPasted accepts the redirect URL pasted by a user whose browser is on
// another machine.
func (c *callback) readPasted(ctx context.Context, r io.Reader, progress io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for sc.Scan() && ctx.Err() == nil {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		u, err := url.Parse(line)
		if err != nil || u.Path != "/callback" || (u.Query().Get("code") == "" && u.Query().Get("error") == "") {
			fmt.Fprintln(progress, "That is not the redirect URL: paste the whole address (http://127.0.0.1:…/callback?code=…&state=…).")
			continue
		}
		if !c.ours(u.Query()) {
			fmt.Fprintln(progress, "That URL belongs to another sign-in attempt (its state does not match): paste the one this attempt's page landed on.")
			continue
		}
		c.deliver(u.Query(), "")
		return
	}
}

// callback serves GET /callback on 127.0.0.1:<port> and nothing else.
//
// Any web page open in the user's browser can send it requests, so: a
// request for another Host (DNS rebinding) is refused; a callback whose
// state is not this attempt's is answered 400 and the attempt goes on
// waiting; the first callback with the right state — a code or an error —
// ends the attempt and is redirected to the bare /callback, which shows the
// outcome (so the code does not stay in the browser's history), with a
// one-time cookie: only the browser that delivered the code learns who
// signed in.
type callback struct {
	state  string
	host   string // the only Host answered
	params chan url.Values

	mu        sync.Mutex
	used      bool
	viewer    string        // the cookie of the browser that delivered the parameters ("" if pasted)
	done      chan struct{} // closed by finish
	result    Result
	err       error
	pageShown chan struct{}
	shownOnce sync.Once
}

// viewerCookie names the one-time cookie of the result page.
const viewerCookie = "sas_signin"

func newCallback(state, host string) *callback {
	return &callback{state: state, host: host, params: make(chan url.Values, 1), done: make(chan struct{}), pageShown: make(chan struct{})}
}

// ours reports whether a callback's state is this attempt's.
func (c *callback) ours(q url.Values) bool {
	return subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(c.state)) == 1
}

// deliver hands the first set of parameters to Run, remembering the cookie
// of the browser that brought them; it reports false for every later one (a
// replayed callback).
func (c *callback) deliver(q url.Values, viewer string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used {
		return false
	}
	c.used, c.viewer = true, viewer
	c.params <- q
	return true
}

func (c *callback) finish(res Result, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return
	default:
	}
	c.result, c.err = res, err
	close(c.done)
}

func (c *callback) waitPageShown(d time.Duration) {
	c.mu.Lock()
	browser := c.viewer != ""
	c.mu.Unlock()
	if !browser {
		return
	}
	select {
	case <-c.pageShown:
	case <-time.After(d):
	}
}

func (c *callback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Host != c.host {
		http.Error(w, "wrong host", http.StatusBadRequest)
		return
	}
	if r.URL.Path != "/callback" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	if q.Has("code") || q.Has("error") || q.Has("state") {
		if !c.ours(q) {
			// Not this attempt's (a stale tab, or any web page): refused,
			// and the attempt goes on.
			showPage(w, http.StatusBadRequest, pageData{Title: "Not this sign-in",
				Error: "This link does not belong to the sign-in in progress. Finish it in the tab it opened, or start again from the app."})
			return
		}
		viewer := random()
		if !c.deliver(q, viewer) {
			showPage(w, http.StatusBadRequest, pageData{Title: "Link already used",
				Error: "This sign-in link was already used. Start sign-in again from the app."})
			return
		}
		http.SetCookie(w, &http.Cookie{Name: viewerCookie, Value: viewer, Path: "/callback", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, "/callback", http.StatusSeeOther)
		return
	}
	// The clean URL: only the browser that delivered the parameters (its
	// cookie) may wait for the outcome and see it.
	c.mu.Lock()
	viewer := c.viewer
	c.mu.Unlock()
	cookie, _ := r.Cookie(viewerCookie)
	if viewer == "" || cookie == nil || subtle.ConstantTimeCompare([]byte(cookie.Value), []byte(viewer)) != 1 {
		showPage(w, http.StatusNotFound, pageData{Title: "No sign-in here", Error: "There is nothing to show on this page."})
		return
	}
	select {
	case <-c.done:
	case <-r.Context().Done():
		return
	case <-time.After(time.Minute):
		showPage(w, http.StatusGatewayTimeout, pageData{Title: "Still working", Error: "Sign-in is taking too long; check the terminal or the app."})
		return
	}
	c.mu.Lock()
	res, err := c.result, c.err
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: viewerCookie, Value: "", Path: "/callback", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	if err != nil {
		showPage(w, http.StatusOK, pageData{Title: "Sign-in failed", Error: strings.TrimPrefix(err.Error(), "sign-in failed: ")})
	} else {
		who := cmp.Or(res.Identity.Email, res.Identity.Username, res.Identity.Subject)
		showPage(w, http.StatusOK, pageData{Title: "You're signed in", OK: true, Who: who})
	}
	c.shownOnce.Do(func() { close(c.pageShown) })
}
