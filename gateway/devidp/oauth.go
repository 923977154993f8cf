package devidp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/signals-sorcery/sas/shared/secureurl"
)

// CodeTTL is how long an authorization code may be redeemed.
const CodeTTL = 10 * time.Minute

type user struct{ sub, email, username string }

type codeGrant struct {
	clientID, redirectURI, challenge, nonce, scope string
	user                                           user
	expires                                        time.Time
}

type refreshGrant struct {
	clientID, scope string
	user            user
}

type accessGrant struct {
	user    user
	expires time.Time
}

// grants is the provider's in-memory state: one map per kind of grant.
type grants struct {
	mu       sync.Mutex
	codes    map[string]codeGrant
	refresh  map[string]refreshGrant
	access   map[string]accessGrant
	refreshN int // successful refresh_token grants
	// users by id (their lower-case email), how many times each email's
	// user was deleted, and how many deletions there were
	emails     map[string]string
	generation map[string]int
	deletions  int
}

func newGrants() grants {
	return grants{codes: map[string]codeGrant{}, refresh: map[string]refreshGrant{}, access: map[string]accessGrant{},
		emails: map[string]string{}, generation: map[string]int{}}
}

// RefreshGrants returns how many refresh_token grants succeeded, so tests
// can prove that concurrent clients spent a refresh token once.
func (p *Provider) RefreshGrants() int {
	p.grants.mu.Lock()
	defer p.grants.mu.Unlock()
	return p.grants.refreshN
}

func randomToken(prefix string) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// AppRedirectURI is the desktop app's own redirect URI (its custom scheme),
// which the provider accepts next to the loopback ones.
const AppRedirectURI = "sas://callback"

// validRedirect accepts loopback redirect URIs with path /callback on any
// port (RFC 8252 §7.3: native apps pick their port at run time), and the
// app's custom-scheme URI (RFC 8252 §7.1), as a provider configured with
// both would.
func validRedirect(raw string) bool {
	if raw == AppRedirectURI {
		return true
	}
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "http" && secureurl.IsLoopback(u.Hostname()) && u.Port() != "" &&
		u.Path == "/callback" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}

// authParams are the parameters of an authorization request.
type authParams struct {
	clientID, redirectURI, responseType, scope, state, nonce, challenge, method, loginHint string
}

func readAuthParams(v url.Values) authParams {
	return authParams{
		clientID: v.Get("client_id"), redirectURI: v.Get("redirect_uri"), responseType: v.Get("response_type"),
		scope: v.Get("scope"), state: v.Get("state"), nonce: v.Get("nonce"),
		challenge: v.Get("code_challenge"), method: v.Get("code_challenge_method"), loginHint: v.Get("login_hint"),
	}
}

func (a authParams) values() url.Values {
	return url.Values{
		"client_id": {a.clientID}, "redirect_uri": {a.redirectURI}, "response_type": {a.responseType},
		"scope": {a.scope}, "state": {a.state}, "nonce": {a.nonce},
		"code_challenge": {a.challenge}, "code_challenge_method": {a.method},
	}
}

// check validates a request whose redirect URI is already trusted; it
// returns an OAuth error code and description, or "".
func (a authParams) check() (string, string) {
	switch {
	case a.responseType != "code":
		return "unsupported_response_type", "Only response_type=code is supported."
	case a.method != "S256" || len(a.challenge) < 43 || len(a.challenge) > 128:
		return "invalid_request", "PKCE with code_challenge_method=S256 is required."
	}
	return "", ""
}

// authorize shows the consent page, or approves at once in AutoApprove mode.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	a := readAuthParams(r.URL.Query())
	if a.clientID == "" || !validRedirect(a.redirectURI) {
		// Never redirect to a URI we cannot vouch for: show the error here.
		p.page(w, http.StatusBadRequest, pageData{Title: "Sign-in request refused",
			Error: "The request has no client_id or its redirect_uri is not a loopback /callback URL."})
		return
	}
	if code, desc := a.check(); code != "" {
		redirectError(w, r, a, code, desc)
		return
	}
	if p.opts.AutoApprove {
		email := a.loginHint
		if email == "" {
			email = p.opts.DefaultEmail
		}
		p.approve(w, r, a, p.userFor(email, p.opts.DefaultUsername))
		return
	}
	email := a.loginHint
	if email == "" {
		email = p.opts.DefaultEmail
	}
	p.page(w, http.StatusOK, pageData{Title: "Sign in to Signals & Sorcery", Consent: true,
		Email: email, Username: p.opts.DefaultUsername, Fields: a.values(), MAC: p.mac(a)})
}

// consent handles the consent form: Continue or Cancel.
func (p *Provider) consent(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		p.page(w, http.StatusBadRequest, pageData{Title: "Sign-in request refused", Error: "The form could not be read."})
		return
	}
	a := readAuthParams(r.PostForm)
	if !validRedirect(a.redirectURI) || !hmac.Equal([]byte(r.PostForm.Get("mac")), []byte(p.mac(a))) {
		p.page(w, http.StatusBadRequest, pageData{Title: "Sign-in request refused", Error: "The form was not issued by this page."})
		return
	}
	if r.PostForm.Get("action") != "approve" {
		redirectError(w, r, a, "access_denied", "The user cancelled sign-in.")
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	username := strings.TrimSpace(r.PostForm.Get("username"))
	if !strings.Contains(email, "@") || len(email) > 254 || len(username) > 64 {
		p.page(w, http.StatusOK, pageData{Title: "Sign in to Signals & Sorcery", Consent: true,
			Error: "Enter a valid email address.", Email: email, Username: username, Fields: a.values(), MAC: p.mac(a)})
		return
	}
	p.approve(w, r, a, p.userFor(email, username))
}

// mac binds a consent form to the request it was shown for, so that another
// site cannot post an approval for its own parameters.
func (p *Provider) mac(a authParams) string {
	m := hmac.New(sha256.New, p.secret)
	m.Write([]byte(a.values().Encode()))
	return hex.EncodeToString(m.Sum(nil))
}

func (p *Provider) approve(w http.ResponseWriter, r *http.Request, a authParams, u user) {
	code := randomToken("code_")
	p.grants.mu.Lock()
	p.grants.codes[code] = codeGrant{clientID: a.clientID, redirectURI: a.redirectURI, challenge: a.challenge,
		nonce: a.nonce, scope: a.scope, user: u, expires: p.opts.Now().Add(CodeTTL)}
	p.grants.mu.Unlock()
	redirect(w, r, a.redirectURI, url.Values{"code": {code}, "state": {a.state}})
}

func redirectError(w http.ResponseWriter, r *http.Request, a authParams, code, desc string) {
	redirect(w, r, a.redirectURI, url.Values{"error": {code}, "error_description": {desc}, "state": {a.state}})
}

func redirect(w http.ResponseWriter, r *http.Request, uri string, q url.Values) {
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, uri+"?"+q.Encode(), http.StatusFound)
}

// token is the token endpoint: authorization_code (PKCE S256 required) and
// refresh_token (rotating: each refresh token works once).
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "The body is not a form.")
		return
	}
	f := r.PostForm
	clientID := f.Get("client_id")
	switch f.Get("grant_type") {
	case "authorization_code":
		p.grants.mu.Lock()
		g, ok := p.grants.codes[f.Get("code")]
		delete(p.grants.codes, f.Get("code")) // single use, whatever happens next
		p.grants.mu.Unlock()
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		switch {
		case !ok || p.opts.Now().After(g.expires):
			oauthError(w, http.StatusBadRequest, "invalid_grant", "The authorization code is invalid, expired or already used.")
		case g.clientID != clientID:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "The code was issued to another client.")
		case g.redirectURI != f.Get("redirect_uri"):
			oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request.")
		case len(f.Get("code_verifier")) < 43 || len(f.Get("code_verifier")) > 128 ||
			subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(g.challenge)) != 1:
			oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed.")
		default:
			p.issue(w, clientID, g.scope, g.nonce, g.user)
		}
	case "refresh_token":
		p.grants.mu.Lock()
		g, ok := p.grants.refresh[f.Get("refresh_token")]
		delete(p.grants.refresh, f.Get("refresh_token")) // rotation: spent now
		if ok && g.clientID == clientID {
			p.grants.refreshN++
		}
		p.grants.mu.Unlock()
		if !ok || g.clientID != clientID {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "The refresh token is invalid, revoked or already used.")
			return
		}
		p.issue(w, clientID, g.scope, "", g.user)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "Supported: authorization_code, refresh_token.")
	}
}

// issue answers a token request: an opaque access token, an ID token when
// openid was asked for, and a refresh token with offline_access.
func (p *Provider) issue(w http.ResponseWriter, clientID, scope, nonce string, u user) {
	scopes := strings.Fields(scope)
	now := p.opts.Now()
	resp := map[string]any{
		"access_token": randomToken("oat_"),
		"token_type":   "Bearer",
		"expires_in":   int(p.opts.TokenTTL.Seconds()),
		"scope":        scope,
	}
	if slices.Contains(scopes, "openid") {
		c := p.Claims(u.sub, clientID, u.email, u.username)
		if nonce != "" {
			c["nonce"] = nonce
		}
		idToken, err := p.Sign(c)
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", "Could not sign the ID token.")
			return
		}
		resp["id_token"] = idToken
	}
	p.grants.mu.Lock()
	p.grants.access[resp["access_token"].(string)] = accessGrant{user: u, expires: now.Add(p.opts.TokenTTL)}
	if slices.Contains(scopes, "offline_access") {
		rt := randomToken("rt_")
		p.grants.refresh[rt] = refreshGrant{clientID: clientID, scope: scope, user: u}
		resp["refresh_token"] = rt
	}
	p.grants.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.grants.mu.Lock()
	g, ok := p.grants.access[tok]
	p.grants.mu.Unlock()
	if !ok || p.opts.Now().After(g.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "The access token is invalid or expired.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"sub": g.user.sub, "email": g.user.email, "email_verified": true,
		"name": g.user.username, "preferred_username": g.user.username,
	})
}

// revoke implements RFC 7009: it forgets the token and always answers 200.
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	_ = r.ParseForm()
	tok := r.PostForm.Get("token")
	p.grants.mu.Lock()
	delete(p.grants.refresh, tok)
	delete(p.grants.access, tok)
	p.grants.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}
