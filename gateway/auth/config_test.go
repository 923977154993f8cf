package auth_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/gateway/auth"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestNewRequiresIssuerAndAudience: a verifier without an issuer or an
// audience is a configuration mistake, refused when the gateway starts
// rather than found on the first request.
func TestNewRequiresIssuerAndAudience(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts auth.Options
	}{
		{"no issuer", auth.Options{Audiences: []string{aud}}},
		{"no audiences", auth.Options{Issuer: "https://clerk.example.com"}},
		{"an empty audience list", auth.Options{Issuer: "https://clerk.example.com", Audiences: []string{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.New(tc.opts); err == nil {
				t.Errorf("New(issuer %q, audiences %q) succeeded; want an error", tc.opts.Issuer, tc.opts.Audiences)
			}
		})
	}
}

// TestVerifyDiscoveryFailures: an issuer whose discovery document is
// unusable makes tokens unavailable (retry later, not sign in again), and
// the cause the gateway logs says what is wrong with the document — the
// operator's only clue when CLERK_ISSUER points at the wrong place.
func TestVerifyDiscoveryFailures(t *testing.T) {
	clk := &testenv.Clock{}
	signer := testenv.NewIssuer(t, "RS256", clk.Now)
	for _, tc := range []struct {
		name string
		doc  func(issuer string) map[string]any
		want string // in the logged cause
	}{
		{"another issuer's document", func(string) map[string]any {
			return map[string]any{"issuer": "https://evil.example.com", "jwks_uri": signer.Issuer() + "/.well-known/jwks.json"}
		}, `document names issuer "https://evil.example.com"`},
		{"no jwks_uri", func(issuer string) map[string]any {
			return map[string]any{"issuer": issuer, "authorization_endpoint": issuer + "/authorize"}
		}, "no jwks_uri"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(nil)
			issuer := "http://" + srv.Listener.Addr().String()
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/.well-known/openid-configuration" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				_ = json.NewEncoder(w).Encode(tc.doc(issuer))
			})
			srv.Start()
			t.Cleanup(srv.Close)
			v, err := auth.New(auth.Options{Issuer: issuer, Audiences: []string{aud}, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), signer.Token(t, "user_1", aud, "", "", map[string]any{"iss": issuer}))
			if code := wire.ErrorCode(err); code != wire.CodeUnavailable || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Verify = %v; want unavailable, with a cause containing %q", err, tc.want)
			}
		})
	}
}
