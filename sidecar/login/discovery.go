package login

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// Provider is what sign-in needs from the identity provider's metadata.
type Provider struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	JWKSURI               string   `json:"jwks_uri"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	UserinfoEndpoint      string   `json:"userinfo_endpoint"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
}

// Discover reads the provider's metadata: the OpenID document, falling back
// to the RFC 8414 document (Clerk serves the latter). A provider that does
// not list PKCE S256 in either is refused: without PKCE a code intercepted
// on this machine could be redeemed by another program.
//
// The documents live under the issuer without its trailing slash; the
// issuer they name must be the configured one (a trailing slash aside, as
// providers differ on it), and tokens are then checked against the issuer
// exactly as the provider names it.
func Discover(ctx context.Context, client *http.Client, issuer string) (Provider, error) {
	base := strings.TrimSuffix(issuer, "/")
	var errs []error
	var found *Provider
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		p, err := fetchMetadata(ctx, client, base+path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.TrimSuffix(p.Issuer, "/") != base {
			errs = append(errs, fmt.Errorf("%s names issuer %q, want %q", path, p.Issuer, issuer))
			continue
		}
		if p.AuthorizationEndpoint == "" || p.TokenEndpoint == "" || p.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s lacks an authorization, token or jwks endpoint", path))
			continue
		}
		if slices.Contains(p.CodeChallengeMethods, "S256") {
			return p, nil
		}
		if found == nil {
			found = &p
		}
	}
	if found != nil {
		return Provider{}, fmt.Errorf("the identity provider %s does not support PKCE with S256; refusing to sign in without it", issuer)
	}
	return Provider{}, fmt.Errorf("discover the identity provider %s: %w", issuer, errors.Join(errs...))
}

func fetchMetadata(ctx context.Context, client *http.Client, url string) (Provider, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Provider{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Provider{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Provider{}, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	var p Provider
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&p); err != nil {
		return Provider{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return p, nil
}
