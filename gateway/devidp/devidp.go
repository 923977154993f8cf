// Package devidp is a local identity provider that speaks the same wire
// protocol as Clerk's OAuth provider: OIDC discovery (both the OpenID and the
// RFC 8414 documents), a JWKS with rotating keys, and Clerk-shaped ID tokens.
// `sas-gateway dev` mounts it at /dev/idp, and the tests use it as "Clerk",
// so the production verification code path is the one tested.
//
// It is a development tool: keys live in memory and anyone who can reach it
// can mint tokens through it.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/signals-sorcery/sas/shared/secureurl"
)

// Options configure a Provider.
type Options struct {
	// Issuer is the provider's public base URL, exactly as it appears in iss.
	Issuer string
	// Alg is the signing algorithm of new keys: "RS256" (default) or "ES256".
	Alg string
	// TokenTTL is the lifetime of minted ID tokens (default 1 h).
	TokenTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AutoApprove skips the consent page: /oauth/authorize redirects with a
	// code at once, for the login_hint email if given, else DefaultEmail.
	AutoApprove bool
	// DefaultEmail and DefaultUsername prefill the consent page.
	DefaultEmail, DefaultUsername string
	// SecretKey, when set, is the Backend API key that its user-deletion
	// stand-in (DELETE /v1/users/{id}) accepts.
	SecretKey string
	// AllowNonLoopback lets the provider run on an issuer that is not a
	// loopback address. It mints tokens for anyone who asks: never in
	// production.
	AllowNonLoopback bool
}

// Provider is the dev identity provider. It is safe for concurrent use.
type Provider struct {
	opts Options

	mu     sync.RWMutex
	keys   []signingKey // keys[len-1] signs; older ones stay published
	grants grants       // codes, refresh and access tokens (oauth.go)
	secret []byte       // MAC key of consent forms
}

type signingKey struct {
	jwk    jose.JSONWebKey // private
	signer jose.Signer
}

// New returns a Provider with one fresh signing key.
func New(opts Options) (*Provider, error) {
	if opts.Issuer == "" {
		return nil, fmt.Errorf("devidp: issuer is required")
	}
	opts.Issuer = strings.TrimSuffix(opts.Issuer, "/")
	u, err := url.Parse(opts.Issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("devidp: issuer %q is not an absolute URL", opts.Issuer)
	}
	if !opts.AllowNonLoopback && !secureurl.IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("devidp: refusing to run on %s: the dev identity provider signs tokens for anyone and serves only loopback addresses", u.Host)
	}
	if opts.DefaultEmail == "" {
		opts.DefaultEmail = "dev@example.com"
	}
	if opts.DefaultUsername == "" {
		opts.DefaultUsername = "Dev User"
	}
	if opts.Alg == "" {
		opts.Alg = string(jose.RS256)
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Provider{opts: opts, grants: newGrants(), secret: make([]byte, 32)}
	_, _ = rand.Read(p.secret)
	if err := p.Rotate(true); err != nil {
		return nil, err
	}
	return p, nil
}

// Issuer returns the issuer URL.
func (p *Provider) Issuer() string { return p.opts.Issuer }

// Rotate makes a new key the signing key. With keepOld the previous keys
// stay in the JWKS (a graceful rotation, as Clerk does it); without, they are
// withdrawn and tokens they signed stop verifying once verifiers refetch.
func (p *Provider) Rotate(keepOld bool) error {
	key, err := newKey(p.opts.Alg)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !keepOld {
		p.keys = nil
	}
	p.keys = append(p.keys, key)
	return nil
}

func newKey(alg string) (signingKey, error) {
	var priv crypto.Signer
	var err error
	switch jose.SignatureAlgorithm(alg) {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return signingKey{}, fmt.Errorf("devidp: unsupported alg %q", alg)
	}
	if err != nil {
		return signingKey{}, fmt.Errorf("devidp: generate key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: alg, Use: "sig"}
	pub := jwk.Public()
	thumb, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return signingKey{}, fmt.Errorf("devidp: thumbprint: %w", err)
	}
	jwk.KeyID = "ins_" + fmt.Sprintf("%x", thumb[:8])
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jwk},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return signingKey{}, fmt.Errorf("devidp: signer: %w", err)
	}
	return signingKey{jwk: jwk, signer: signer}, nil
}

// SigningKey returns the current private signing key, for tests that need
// to forge tokens by hand.
func (p *Provider) SigningKey() jose.JSONWebKey {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.keys[len(p.keys)-1].jwk
}

// JWKS returns the published (public) key set.
func (p *Provider) JWKS() jose.JSONWebKeySet {
	p.mu.RLock()
	defer p.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(p.keys))}
	for _, k := range p.keys {
		set.Keys = append(set.Keys, k.jwk.Public())
	}
	return set
}

// Claims returns the claims of a Clerk-shaped ID token for sub, valid from
// now for the provider's TokenTTL. Callers may change any of them.
func (p *Provider) Claims(sub, audience, email, name string) map[string]any {
	now := p.opts.Now()
	c := map[string]any{
		"iss":            p.opts.Issuer,
		"sub":            sub,
		"aud":            audience,
		"azp":            audience,
		"iat":            now.Unix(),
		"nbf":            now.Unix(),
		"exp":            now.Add(p.opts.TokenTTL).Unix(),
		"email":          email,
		"email_verified": true,
		"name":           name,
	}
	if name != "" {
		c["preferred_username"] = name
	}
	return c
}

// Sign signs claims with the current key (header: alg, kid, typ JWT).
func (p *Provider) Sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: marshal claims: %w", err)
	}
	p.mu.RLock()
	signer := p.keys[len(p.keys)-1].signer
	p.mu.RUnlock()
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Handler serves the discovery documents and the JWKS, relative to the
// issuer's path (mount it with http.StripPrefix when the issuer has one).
func (p *Provider) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.serveDiscovery)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", p.serveDiscovery)
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.JWKS())
	})
	mux.HandleFunc("GET /oauth/authorize", p.authorize)
	mux.HandleFunc("POST /oauth/authorize", p.consent)
	mux.HandleFunc("POST /oauth/token", p.token)
	mux.HandleFunc("GET /oauth/userinfo", p.userinfo)
	mux.HandleFunc("POST /oauth/revoke", p.revoke)
	mux.HandleFunc("DELETE /v1/users/{id}", p.deleteUser)
	return mux
}

func (p *Provider) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                p.opts.Issuer,
		"jwks_uri":                              p.opts.Issuer + "/.well-known/jwks.json",
		"authorization_endpoint":                p.opts.Issuer + "/oauth/authorize",
		"token_endpoint":                        p.opts.Issuer + "/oauth/token",
		"userinfo_endpoint":                     p.opts.Issuer + "/oauth/userinfo",
		"revocation_endpoint":                   p.opts.Issuer + "/oauth/revoke",
		"code_challenge_methods_supported":      []string{"S256"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": []string{"none"},
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{p.opts.Alg},
		"scopes_supported":                      []string{"openid", "email", "profile", "offline_access"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "nbf", "email", "email_verified", "name", "preferred_username", "nonce"},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
