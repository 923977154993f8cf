package main_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
)

// expireStored rewrites the stored ID token's exp as if it were about to
// lapse (its signature no longer matters: the refresh replaces it) and
// returns it.
func expireStored(t *testing.T, h string) string {
	t.Helper()
	path := filepath.Join(configDir(h), "tokens-local.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(f["id_token"].(string), ".")
	c := claimsOf(t, f["id_token"].(string))
	c["exp"] = time.Now().Add(30 * time.Second).Unix()
	payload, _ := json.Marshal(c)
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	f["id_token"] = strings.Join(parts, ".")
	b, _ = json.Marshal(f)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f["id_token"].(string)
}

// claimsOf decodes the claims of a stored ID token.
func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c map[string]any
	if err != nil || json.Unmarshal(payload, &c) != nil {
		t.Fatalf("undecodable claims: %v", err)
	}
	return c
}

// userIn returns the user object of a status result or an authChanged's
// params.
func userIn(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	u, ok := m["user"].(map[string]any)
	if !ok {
		t.Fatalf("no user in %v", m)
	}
	return u
}

// TestUserinfoOnlyProvider: a provider that serves the email and name only
// at userinfo (as OpenID Connect Core §5.4 allows; the zitadel/oidc example
// OP does). The sidecar's status and authChanged name the user read from
// userinfo at sign-in, and after a refresh whose new ID token lacks them
// too (userinfo is read again: the email changed at the provider shows, and
// the change is announced); logout removes the stored profile.
func TestUserinfoOnlyProvider(t *testing.T) {
	st := stacktest.Start(t) // in process: its provider can drop the claims
	st.Userinfo.Only.Store(true)
	h, env := home(t, st.URL)
	s := startSidecar(t, h, env)

	r := result(t, s.login())
	c := claimsOf(t, storedToken(t, h))
	if c["email"] != nil || c["name"] != nil {
		t.Fatalf("the stored ID token names the user (%v): the test proves nothing", c)
	}
	sub := c["sub"]
	want := map[string]any{"id": sub, "email": "dev@example.com", "username": "Dev User"}
	if diff := cmp.Diff(want, userIn(t, r)); diff != "" {
		t.Errorf("login result: user (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, userIn(t, s.note("authChanged")["params"].(map[string]any))); diff != "" {
		t.Errorf("authChanged after sign-in: user (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, userIn(t, result(t, s.call("status", nil)))); diff != "" {
		t.Errorf("status after sign-in: user (-want +got):\n%s", diff)
	}

	// The email changes at the provider; the token is about to expire: the
	// next gateway call refreshes it, and the new ID token lacks the claims.
	st.Userinfo.SetEmail("renamed@example.com")
	expired := expireStored(t, h)
	_ = result(t, s.call("request", map[string]any{"path": "/v1/me"}))
	tok := storedToken(t, h)
	if tok == expired {
		t.Fatal("not refreshed")
	}
	if c := claimsOf(t, tok); c["email"] != nil {
		t.Fatalf("the refreshed ID token names the user: %v", c)
	}
	want["email"] = "renamed@example.com"
	if diff := cmp.Diff(want, userIn(t, result(t, s.call("status", nil)))); diff != "" {
		t.Errorf("status after a refresh: user (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, userIn(t, s.note("authChanged")["params"].(map[string]any))); diff != "" {
		t.Errorf("authChanged after a refresh: user (-want +got):\n%s", diff)
	}

	if out := result(t, s.call("logout", nil)); out["signedIn"] != false {
		t.Errorf("logout = %v", out)
	}
	if _, err := os.Stat(filepath.Join(configDir(h), "profile-local.json")); !os.IsNotExist(err) {
		t.Errorf("logout left the profile: %v", err)
	}
}
