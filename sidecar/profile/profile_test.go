package profile_test

import (
	"flag"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/sidecar/profile"
)

func resolve(t *testing.T, args []string, env map[string]string) (profile.Settings, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var f profile.Flags
	f.Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.Resolve(func(k string) string { return env[k] })
}

func TestPrecedence(t *testing.T) {
	// Profile defaults.
	s, err := resolve(t, nil, map[string]string{"SAS_PROFILE": "local"})
	if err != nil {
		t.Fatal(err)
	}
	want := profile.Settings{Profile: "local", Issuer: "http://127.0.0.1:8080/dev/idp", ClientID: "sas-local",
		Gateway: "http://127.0.0.1:8080", Scopes: []string{"openid", "email", "profile", "offline_access"}, Port: 43110, TokenStore: "keyring", AppRedirectURI: "sas://callback"}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("local defaults (-want +got):\n%s", diff)
	}
	if s.RedirectURL() != "http://127.0.0.1:43110/callback" {
		t.Errorf("redirect = %s", s.RedirectURL())
	}
	// Environment over profile, flag over environment.
	s, err = resolve(t, []string{"--gateway", "http://127.0.0.1:9000", "--port", "43111", "--profile", "local"},
		map[string]string{"SAS_PROFILE": "prod", "SAS_GATEWAY_URL": "http://127.0.0.1:8081", "SAS_CLIENT_ID": "from-env", "SAS_TOKEN_STORE": "file", "SAS_SCOPES": "openid,email"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Profile != "local" || s.Gateway != "http://127.0.0.1:9000" || s.ClientID != "from-env" || s.Port != 43111 ||
		s.TokenStore != "file" || !cmp.Equal(s.Scopes, []string{"openid", "email"}) {
		t.Errorf("settings = %+v", s)
	}
	if s, _ := resolve(t, nil, nil); s.Profile != "prod" {
		t.Errorf("default profile = %q", s.Profile)
	}
}

func TestValidationReportsEverything(t *testing.T) {
	_, err := resolve(t, []string{"--profile", "staging", "--port", "99999", "--token-store", "vault",
		"--issuer", "http://idp.example.com", "--scopes", "email"}, nil)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"unknown profile", "port", "token store", "issuer", "openid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

// TestIssuerKeptAsConfigured: a trailing slash is part of an issuer (Auth0
// writes one), so it is not stripped; the gateway URL's is.
func TestIssuerKeptAsConfigured(t *testing.T) {
	s, err := resolve(t, nil, map[string]string{"SAS_ISSUER": "https://tenant.auth0.com/", "SAS_GATEWAY_URL": "https://sas.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Issuer != "https://tenant.auth0.com/" || s.Gateway != "https://sas.example.com" {
		t.Errorf("issuer %q, gateway %q", s.Issuer, s.Gateway)
	}
}
