package stacktest

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/signals-sorcery/sas/gateway/devidp"
)

// Userinfo makes the stack's provider behave like a standard OpenID
// provider that serves the profile only at its userinfo endpoint (OpenID
// Connect Core §5.4 allows it; the zitadel/oidc example OP does it), and
// lets a test change or break that endpoint.
type Userinfo struct {
	// Only: the ID tokens of the token endpoint carry no email or name
	// (re-signed by the provider, so they verify).
	Only atomic.Bool
	// Down makes the userinfo endpoint answer 503 while set.
	Down atomic.Bool

	mu    sync.Mutex
	email string
}

// SetEmail makes userinfo answer email from now on, as after a change made
// at the provider.
func (u *Userinfo) SetEmail(email string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.email = email
}

func (u *Userinfo) emailOverride() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.email
}

// wrap serves next (the dev stack) with the provider's token and userinfo
// answers changed as u says.
func (u *Userinfo) wrap(idp *devidp.Provider, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/dev/idp/oauth/token" && u.Only.Load():
			rewrite(w, r, next, func(m map[string]any) {
				if raw, ok := m["id_token"].(string); ok {
					m["id_token"] = withoutProfile(idp, raw)
				}
			})
		case r.URL.Path == "/dev/idp/oauth/userinfo" && u.Down.Load():
			http.Error(w, "userinfo down for the test", http.StatusServiceUnavailable)
		case r.URL.Path == "/dev/idp/oauth/userinfo" && u.emailOverride() != "":
			email := u.emailOverride()
			rewrite(w, r, next, func(m map[string]any) { m["email"] = email })
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// rewrite serves r with next and applies edit to a successful JSON answer.
func rewrite(w http.ResponseWriter, r *http.Request, next http.Handler, edit func(map[string]any)) {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var m map[string]any
	if rec.Code == http.StatusOK && json.Unmarshal(rec.Body.Bytes(), &m) == nil {
		edit(m)
		b, _ := json.Marshal(m)
		rec.Body.Reset()
		rec.Body.Write(b)
	}
	w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// withoutProfile re-signs an ID token without its email and name claims.
func withoutProfile(idp *devidp.Provider, raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return raw
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return raw
	}
	for _, k := range []string{"email", "email_verified", "name", "username", "preferred_username"} {
		delete(c, k)
	}
	signed, err := idp.Sign(c)
	if err != nil {
		return raw
	}
	return signed
}
