package main_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
)

// storedClaims decodes the claims of the stored ID token.
func (s *stack) storedClaims() map[string]any {
	s.t.Helper()
	parts := strings.Split(s.tokenFile()["id_token"].(string), ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		s.t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		s.t.Fatal(err)
	}
	return c
}

// statusUser runs `sas-login status --json` and returns its user.
func (s *stack) statusUser() map[string]any {
	s.t.Helper()
	r := s.run(nil, s.env(), "status", "--json")
	var st struct {
		SignedIn bool           `json:"signedIn"`
		User     map[string]any `json:"user"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 || !st.SignedIn {
		s.t.Fatalf("status --json: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	return st.User
}

// TestUserinfoOnlyProvider: a provider that serves the email and name only
// at userinfo (as OpenID Connect Core §5.4 allows; the zitadel/oidc example
// OP does). `status --json` names the user read from userinfo at sign-in,
// and after a refresh whose new ID token lacks them too (userinfo is read
// again: a new email shows); logout removes the stored profile.
func TestUserinfoOnlyProvider(t *testing.T) {
	st := stacktest.Start(t) // in process: its provider can drop the claims
	st.Userinfo.Only.Store(true)
	s := &stack{t: t, base: st.URL, home: tempdir.New(t), port: freePort(t), store: "file", devLogs: &syncBuf{}, cliLogs: &syncBuf{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sas-login:\n%s", s.cliLogs)
		}
	})
	if r := s.login(browse); r.code != 0 || !strings.Contains(r.stderr, "Signed in as dev@example.com") {
		t.Fatalf("login: exit %d\n%s", r.code, r.stderr)
	}
	c := s.storedClaims()
	if c["email"] != nil || c["name"] != nil {
		t.Fatalf("the stored ID token names the user (%v): the test proves nothing", c)
	}
	want := map[string]any{"id": c["sub"], "email": "dev@example.com", "username": "Dev User"}
	if diff := cmp.Diff(want, s.statusUser()); diff != "" {
		t.Errorf("status --json after sign-in: user (-want +got):\n%s", diff)
	}
	if r := s.run(nil, s.env(), "status"); !strings.Contains(r.stdout, "Signed in as dev@example.com") {
		t.Errorf("status: %q", r.stdout)
	}

	// The email changes at the provider; the token is about to expire:
	// `token` refreshes, and the new ID token lacks the claims too.
	st.Userinfo.SetEmail("renamed@example.com")
	s.expire()
	old := s.tokenFile()["id_token"]
	if r := s.run(nil, s.env(), "token"); r.code != 0 || strings.TrimSpace(r.stdout) == old {
		t.Fatalf("token: exit %d %q", r.code, r.stderr)
	}
	if c := s.storedClaims(); c["email"] != nil {
		t.Fatalf("the refreshed ID token names the user: %v", c)
	}
	want["email"] = "renamed@example.com"
	if diff := cmp.Diff(want, s.statusUser()); diff != "" {
		t.Errorf("status --json after a refresh: user (-want +got):\n%s", diff)
	}

	profileFile := filepath.Join(s.configDir(), "profile-local.json")
	if _, err := os.Stat(profileFile); err != nil {
		t.Fatalf("no stored profile: %v", err)
	}
	if r := s.run(nil, s.env(), "logout"); r.code != 0 {
		t.Fatalf("logout: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(profileFile); !os.IsNotExist(err) {
		t.Errorf("logout left the profile: %v", err)
	}
}
