// Package profile resolves the settings of sas-login and sas-sidecar:
// flag > environment > the built-in defaults of the chosen profile.
package profile

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/signals-sorcery/sas/shared/secureurl"
)

// Token store kinds.
const (
	StoreKeyring = "keyring"
	StoreFile    = "file"
)

// DefaultScopes asks for an ID token, the user's email and profile, and a
// refresh token.
const DefaultScopes = "openid email profile offline_access"

// DefaultPort is the loopback port of the redirect URI registered at Clerk.
const DefaultPort = 43110

// Settings are the resolved settings of one run.
type Settings struct {
	Profile    string
	Issuer     string
	ClientID   string
	Gateway    string
	Scopes     []string
	Port       int
	TokenStore string
	// AppRedirectURI is the app's own redirect URI (SAS_APP_REDIRECT_URI,
	// default sas://callback), for sign-ins that return to the app.
	AppRedirectURI string
}

// DefaultAppRedirectURI is the app's custom-scheme redirect URI.
const DefaultAppRedirectURI = "sas://callback"

// RedirectURL is the loopback redirect URI registered at the provider.
func (s Settings) RedirectURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(s.Port) + "/callback"
}

// defaults are the built-in profiles. prod and dev point at the Clerk
// instances and Fly apps of the seed; local at `sas-gateway dev`.
var defaults = map[string]Settings{
	"prod":  {Issuer: "https://clerk.signalsandsorcery.app", ClientID: "sas-desktop", Gateway: "https://sas.fly.dev"},
	"dev":   {Issuer: "https://clerk.dev.signalsandsorcery.app", ClientID: "sas-desktop-dev", Gateway: "https://sas-dev.fly.dev"},
	"local": {Issuer: "http://127.0.0.1:8080/dev/idp", ClientID: "sas-local", Gateway: "http://127.0.0.1:8080"},
}

// Flags are the configuration flags every subcommand accepts.
type Flags struct {
	profile, issuer, clientID, gateway, scopes, port, tokenStore string
}

// Register adds the configuration flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.profile, "profile", "", "profile: prod, dev or local (env SAS_PROFILE; default prod)")
	fs.StringVar(&f.issuer, "issuer", "", "OIDC issuer URL (env SAS_ISSUER)")
	fs.StringVar(&f.clientID, "client-id", "", "OAuth client id (env SAS_CLIENT_ID)")
	fs.StringVar(&f.gateway, "gateway", "", "gateway base URL (env SAS_GATEWAY_URL)")
	fs.StringVar(&f.scopes, "scopes", "", "OAuth scopes (env SAS_SCOPES; default \""+DefaultScopes+"\")")
	fs.StringVar(&f.port, "port", "", "loopback redirect port (env SAS_REDIRECT_PORT; default 43110)")
	fs.StringVar(&f.tokenStore, "token-store", "", "keyring or file (env SAS_TOKEN_STORE; default keyring)")
}

// Resolve applies flag > environment > profile default and validates the
// result, reporting every problem at once.
func (f *Flags) Resolve(getenv func(string) string) (Settings, error) {
	pick := func(flagVal, env string) string {
		if flagVal != "" {
			return flagVal
		}
		return strings.TrimSpace(getenv(env))
	}
	var problems []string
	name := pick(f.profile, "SAS_PROFILE")
	if name == "" {
		name = "prod"
	}
	s, ok := defaults[name]
	if !ok {
		problems = append(problems, fmt.Sprintf("unknown profile %q (want prod, dev or local)", name))
	}
	s.Profile = name
	if v := pick(f.issuer, "SAS_ISSUER"); v != "" {
		s.Issuer = v // exactly as configured: "https://x/" and "https://x" are different issuers
	}
	if v := pick(f.clientID, "SAS_CLIENT_ID"); v != "" {
		s.ClientID = v
	}
	if v := pick(f.gateway, "SAS_GATEWAY_URL"); v != "" {
		s.Gateway = strings.TrimSuffix(v, "/")
	}
	s.Scopes = strings.Fields(DefaultScopes)
	if v := pick(f.scopes, "SAS_SCOPES"); v != "" {
		s.Scopes = strings.Fields(strings.ReplaceAll(v, ",", " "))
	}
	s.Port = DefaultPort
	if v := pick(f.port, "SAS_REDIRECT_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			problems = append(problems, "port (--port / SAS_REDIRECT_PORT) must be between 1 and 65535")
		}
		s.Port = p
	}
	s.AppRedirectURI = DefaultAppRedirectURI
	if v := strings.TrimSpace(getenv("SAS_APP_REDIRECT_URI")); v != "" {
		if u, err := url.Parse(v); err != nil || u.Scheme == "" || u.Scheme == "http" || u.Fragment != "" {
			problems = append(problems, "SAS_APP_REDIRECT_URI must be an absolute URI of the app's own scheme, like sas://callback")
		}
		s.AppRedirectURI = v
	}
	s.TokenStore = StoreKeyring
	if v := pick(f.tokenStore, "SAS_TOKEN_STORE"); v != "" {
		s.TokenStore = v
	}
	if s.TokenStore != StoreKeyring && s.TokenStore != StoreFile {
		problems = append(problems, "token store (--token-store / SAS_TOKEN_STORE) must be keyring or file")
	}
	for what, u := range map[string]string{"issuer (--issuer / SAS_ISSUER)": s.Issuer, "gateway (--gateway / SAS_GATEWAY_URL)": s.Gateway} {
		if err := checkURL(u); err != nil {
			problems = append(problems, what+" "+err.Error())
		}
	}
	if s.ClientID == "" {
		problems = append(problems, "client id (--client-id / SAS_CLIENT_ID) is empty")
	}
	if !slices.Contains(s.Scopes, "openid") {
		problems = append(problems, "scopes must include openid (the gateway verifies the ID token)")
	}
	if len(problems) > 0 {
		return s, errors.New(strings.Join(problems, "; "))
	}
	return s, nil
}

// checkURL accepts https URLs, and http only on loopback (the rule of
// both programs: shared/secureurl).
func checkURL(raw string) error { return secureurl.Check(raw) }
