package devidp_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/gateway/devidp"
)

const (
	client   = "sas-local"
	redirect = "http://127.0.0.1:43110/callback"
	verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-dBjftJeZ4CVP"
)

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

type idp struct {
	t   *testing.T
	p   *devidp.Provider
	srv *httptest.Server
}

func newIDP(t *testing.T, auto bool) *idp {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	p, err := devidp.New(devidp.Options{Issuer: "http://" + srv.Listener.Addr().String(), AutoApprove: auto})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = p.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &idp{t: t, p: p, srv: srv}
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func authorizeQuery(mod map[string]string) string {
	q := url.Values{"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect},
		"scope": {"openid email profile offline_access"}, "state": {"st"}, "nonce": {"n"},
		"code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}}
	for k, v := range mod {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return q.Encode()
}

// code runs an auto-approved authorization and returns the code.
func (i *idp) code(mod map[string]string) url.Values {
	i.t.Helper()
	resp, err := noRedirect.Get(i.srv.URL + "/oauth/authorize?" + authorizeQuery(mod))
	if err != nil {
		i.t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		i.t.Fatalf("authorize = %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query()
}

func (i *idp) token(form url.Values) (int, map[string]any) {
	i.t.Helper()
	resp, err := http.PostForm(i.srv.URL+"/oauth/token", form)
	if err != nil {
		i.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func redeem(code, v string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect},
		"client_id": {client}, "code_verifier": {v}}
}

func TestAuthorizeRefusals(t *testing.T) {
	i := newIDP(t, true)
	// Unverifiable redirect: an error page here, never a redirect there.
	for _, bad := range []string{"https://evil.example.com/callback", "http://127.0.0.1:43110/other", "http://10.0.0.1:43110/callback", ""} {
		resp, err := noRedirect.Get(i.srv.URL + "/oauth/authorize?" + authorizeQuery(map[string]string{"redirect_uri": bad}))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
			t.Errorf("redirect_uri %q: %d %q", bad, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	// PKCE is required, and only S256.
	for _, mod := range []map[string]string{{"code_challenge": ""}, {"code_challenge_method": "plain"}, {"code_challenge_method": ""}} {
		q := i.code(mod)
		if q.Get("error") != "invalid_request" || q.Get("state") != "st" || q.Get("code") != "" {
			t.Errorf("%v: redirected with %v", mod, q)
		}
	}
}

func TestCodeExchange(t *testing.T) {
	i := newIDP(t, true)
	t.Run("PKCE verifier mismatch", func(t *testing.T) {
		status, body := i.token(redeem(i.code(nil).Get("code"), strings.Repeat("x", 43)))
		if status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", status, body)
		}
	})
	t.Run("redirect_uri mismatch", func(t *testing.T) {
		f := redeem(i.code(nil).Get("code"), verifier)
		f.Set("redirect_uri", "http://127.0.0.1:43111/callback")
		if status, body := i.token(f); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", status, body)
		}
	})
	t.Run("other client", func(t *testing.T) {
		f := redeem(i.code(nil).Get("code"), verifier)
		f.Set("client_id", "someone-else")
		if status, body := i.token(f); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("%d %v", status, body)
		}
	})
	t.Run("single use", func(t *testing.T) {
		code := i.code(nil).Get("code")
		if status, body := i.token(redeem(code, verifier)); status != 200 || body["id_token"] == nil || body["refresh_token"] == nil {
			t.Fatalf("first redemption: %d %v", status, body)
		}
		if status, body := i.token(redeem(code, verifier)); status != 400 || body["error"] != "invalid_grant" {
			t.Errorf("second redemption: %d %v", status, body)
		}
	})
}

// TestRefreshRotates: each refresh token works once; the new one works.
func TestRefreshRotates(t *testing.T) {
	i := newIDP(t, true)
	_, body := i.token(redeem(i.code(nil).Get("code"), verifier))
	rt := body["refresh_token"].(string)
	refresh := func(rt string) (int, map[string]any) {
		return i.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {client}})
	}
	status, next := refresh(rt)
	if status != 200 || next["refresh_token"] == rt || next["id_token"] == nil {
		t.Fatalf("refresh: %d %v", status, next)
	}
	if status, body := refresh(rt); status != 400 || body["error"] != "invalid_grant" {
		t.Errorf("spent refresh token accepted: %d %v", status, body)
	}
	if i.p.RefreshGrants() != 1 {
		t.Errorf("RefreshGrants = %d, want 1", i.p.RefreshGrants())
	}
	// Revocation (RFC 7009) kills the live one.
	resp, err := http.PostForm(i.srv.URL+"/oauth/revoke", url.Values{"token": {next["refresh_token"].(string)}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
	if status, _ := refresh(next["refresh_token"].(string)); status != 400 {
		t.Errorf("revoked refresh token accepted: %d", status)
	}
	// userinfo answers for the access token.
	req, _ := http.NewRequest("GET", i.srv.URL+"/oauth/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+next["access_token"].(string))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"email":"dev@example.com"`) {
		t.Errorf("userinfo: %d %s", resp.StatusCode, b)
	}
}

// TestConsentPage: the form shows, Continue signs in as the edited email,
// Cancel answers access_denied, and a form for other parameters is refused.
func TestConsentPage(t *testing.T) {
	i := newIDP(t, false)
	resp, err := http.Get(i.srv.URL + "/oauth/authorize?" + authorizeQuery(nil))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Continue") || !strings.Contains(string(page), "Cancel") {
		t.Fatalf("consent page: %d\n%s", resp.StatusCode, page)
	}
	if strings.Contains(string(page), "<script") || regexp.MustCompile(`(src|href)="https?:`).Match(page) {
		t.Error("consent page loads or runs something")
	}
	form := url.Values{}
	for _, m := range regexp.MustCompile(`name="([a-z_]+)" value="([^"]*)"`).FindAllStringSubmatch(string(page), -1) {
		form.Set(m[1], strings.ReplaceAll(m[2], "&#43;", "+"))
	}
	post := func(f url.Values) url.Values {
		resp, err := noRedirect.PostForm(i.srv.URL+"/oauth/authorize", f)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc == nil {
			return nil
		}
		return loc.Query()
	}
	deny := url.Values{}
	for k, v := range form {
		deny[k] = v
	}
	deny.Set("action", "deny")
	if q := post(deny); q.Get("error") != "access_denied" || q.Get("state") != "st" {
		t.Errorf("cancel: %v", q)
	}
	forged := url.Values{}
	for k, v := range form {
		forged[k] = v
	}
	forged.Set("state", "attacker")
	forged.Set("action", "approve")
	if q := post(forged); q != nil && q.Get("code") != "" {
		t.Error("a consent form with altered parameters was approved")
	}
	form.Set("action", "approve")
	form.Set("email", "steve@example.com")
	form.Set("username", "Steve")
	q := post(form)
	_, body := i.token(redeem(q.Get("code"), verifier))
	idt, _ := body["id_token"].(string)
	parts := strings.Split(idt, ".")
	if len(parts) != 3 {
		t.Fatalf("no id token: %v", body)
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	for _, want := range []string{`"email":"steve@example.com"`, `"preferred_username":"Steve"`, `"nonce":"n"`, `"aud":"sas-local"`, `"sub":"user_`} {
		if !strings.Contains(string(claims), want) {
			t.Errorf("ID token claims lack %s: %s", want, claims)
		}
	}
}

func TestRefusesNonLoopbackIssuer(t *testing.T) {
	if _, err := devidp.New(devidp.Options{Issuer: "https://idp.example.com"}); err == nil {
		t.Error("started on a public issuer")
	}
	if _, err := devidp.New(devidp.Options{Issuer: "https://idp.example.com", AllowNonLoopback: true}); err != nil {
		t.Errorf("forced: %v", err)
	}
}
