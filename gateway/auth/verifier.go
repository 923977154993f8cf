// Package auth verifies the Clerk-issued JWTs that callers present as
// bearer tokens and turns them into a gateway.Identity.
//
// Signature, issuer and algorithm checks are go-oidc's; this package adds
// what go-oidc does not do the way the contract wants: several accepted
// audiences, an azp allow-list, 60 s of leeway on exp and nbf (go-oidc has
// none on exp and five minutes on nbf), a JWKS refresh cooldown, and a cheap
// structural check that rejects junk before any crypto or network work.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/ttlcache"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Limits of the contract and of good sense.
const (
	// Leeway is the clock skew tolerated on exp and nbf.
	Leeway = 60 * time.Second
	// RefreshCooldown is the minimum time between two JWKS refreshes.
	RefreshCooldown = 30 * time.Second
	// MaxKeyAge bounds how long a fetched key set is trusted without a refetch,
	// so a key the issuer withdrew stops verifying within this time.
	MaxKeyAge = time.Hour
	// MaxTokenBytes refuses absurd tokens before parsing; Clerk's are ~1–2 KB.
	MaxTokenBytes = 8 << 10
	// TokenCacheTTL bounds how long a verified token is trusted from memory
	// (never past its exp + Leeway). Signature checks are most of the cost of
	// an authenticated request, and a client sends the same token for every
	// call until it refreshes.
	TokenCacheTTL = 5 * time.Minute
	// TokenCacheSize bounds the verified-token cache (~200 bytes an entry).
	TokenCacheSize = 100_000

	fetchTimeout = 5 * time.Second
)

var allowedAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256}

// Options configure a Verifier. Issuer and Audiences are required.
type Options struct {
	Issuer            string
	JWKSURL           string   // when empty, discovered from the issuer
	Audiences         []string // a token must name at least one
	AuthorizedParties []string // when set, a present azp must be listed
	HTTPClient        *http.Client
	Now               func() time.Time
	Logger            *slog.Logger
	// NoCache verifies every token in full (for benchmarks).
	NoCache bool
	// OnRefresh, when set, is called after each fetch of the key set with
	// its error or nil (metrics).
	OnRefresh func(err error)
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	opts     Options
	keys     *keySet
	verifier *oidc.IDTokenVerifier
	// verified holds identities of tokens that passed every check, keyed by
	// the token's SHA-256 (the token itself is not kept).
	verified *ttlcache.Cache[[sha256.Size]byte, gateway.Identity]
	// cacheMu and keyGen make "withdraw a key, empty the cache" atomic with
	// respect to "cache a token verified with the old keys": a token whose
	// verification began before a withdrawal is not cached after it.
	cacheMu sync.Mutex
	keyGen  uint64
}

// New returns a Verifier. It does no I/O: discovery and the first JWKS load
// happen on the first token, so the gateway starts even while Clerk is down.
func New(opts Options) (*Verifier, error) {
	if opts.Issuer == "" || len(opts.Audiences) == 0 {
		return nil, errors.New("auth: issuer and at least one audience are required")
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{opts: opts, verified: ttlcache.New[[sha256.Size]byte, gateway.Identity](TokenCacheSize, opts.Now)}
	v.keys = &keySet{
		fetch:    newFetcher(opts.HTTPClient, opts.Issuer, opts.JWKSURL),
		now:      opts.Now,
		cooldown: RefreshCooldown,
		maxAge:   MaxKeyAge,
		// A key the issuer withdrew must stop vouching for tokens at once.
		onKeyRemoved: v.forgetVerified,
		onFetch:      opts.OnRefresh,
	}
	v.verifier = oidc.NewVerifier(opts.Issuer, v.keys, &oidc.Config{
		SkipClientIDCheck:    true, // several audiences: checked below
		SkipExpiryCheck:      true, // leeway on exp and nbf: checked below
		SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256},
	})
	return v, nil
}

// claims are the parts of a Clerk token that go-oidc does not expose.
type claims struct {
	NotBefore       *float64 `json:"nbf"`
	AuthorizedParty string   `json:"azp"`
	wire.ProfileClaims
}

// Verify checks raw and returns who it identifies.
//
// Errors: *wire.Error with code invalid_token (the reason is in Err, for the
// debug log only) or unavailable (the issuer's keys cannot be fetched).
func (v *Verifier) Verify(ctx context.Context, raw string) (gateway.Identity, error) {
	if len(raw) > MaxTokenBytes {
		return gateway.Identity{}, invalid("too_large", fmt.Errorf("token is %d bytes, over the %d limit", len(raw), MaxTokenBytes))
	}
	if v.opts.NoCache {
		return v.verify(ctx, raw)
	}
	sum := sha256.Sum256([]byte(raw))
	if id, ok := v.verified.Get(sum); ok {
		return id, nil
	}
	v.cacheMu.Lock()
	gen := v.keyGen
	v.cacheMu.Unlock()
	id, err := v.verify(ctx, raw)
	if err == nil {
		v.cacheMu.Lock()
		if v.keyGen == gen {
			v.verified.Put(sum, id, minTime(v.opts.Now().Add(TokenCacheTTL), id.Expiry.Add(Leeway)))
		}
		v.cacheMu.Unlock()
	}
	return id, err
}

// forgetVerified empties the verified-token cache after a key withdrawal.
func (v *Verifier) forgetVerified() {
	v.cacheMu.Lock()
	defer v.cacheMu.Unlock()
	v.keyGen++
	v.verified.Clear()
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// verify does the full check of a token not in the cache.
func (v *Verifier) verify(ctx context.Context, raw string) (gateway.Identity, error) {
	if err := precheck(raw); err != nil {
		return gateway.Identity{}, invalid("malformed", err)
	}
	if err := v.keys.load(ctx); err != nil {
		return gateway.Identity{}, keysUnavailable(err)
	}
	tok, err := v.verifier.Verify(ctx, raw)
	if err != nil {
		// go-oidc formats the key set's error with %v: its text is all
		// that is left of it.
		if strings.Contains(err.Error(), errKeysUnavailable.Error()) {
			return gateway.Identity{}, keysUnavailable(err)
		}
		return gateway.Identity{}, invalid(oidcReason(err), err)
	}
	var c claims
	if err := tok.Claims(&c); err != nil {
		return gateway.Identity{}, invalid("malformed", fmt.Errorf("decode claims: %w", err))
	}
	now := v.opts.Now()
	switch {
	case tok.Subject == "":
		return gateway.Identity{}, invalid("claims", errors.New("no sub claim"))
	case tok.Expiry.IsZero():
		return gateway.Identity{}, invalid("claims", errors.New("no exp claim"))
	case now.After(tok.Expiry.Add(Leeway)):
		return gateway.Identity{}, invalid("expired", fmt.Errorf("expired at %s", tok.Expiry.UTC().Format(time.RFC3339)))
	case c.NotBefore != nil && now.Add(Leeway).Before(time.Unix(int64(*c.NotBefore), 0)):
		return gateway.Identity{}, invalid("not_yet_valid", errors.New("not valid yet (nbf)"))
	case !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(v.opts.Audiences, a) }):
		return gateway.Identity{}, invalid("audience", fmt.Errorf("audience %q not accepted", tok.Audience))
	case c.AuthorizedParty != "" && len(v.opts.AuthorizedParties) > 0 && !slices.Contains(v.opts.AuthorizedParties, c.AuthorizedParty):
		return gateway.Identity{}, invalid("audience", fmt.Errorf("azp %q not accepted", c.AuthorizedParty))
	}
	return gateway.Identity{Subject: tok.Subject, Email: c.Email, Username: c.DisplayUsername(), Expiry: tok.Expiry}, nil
}

func keysUnavailable(err error) *wire.Error {
	return &wire.Error{
		Code:       wire.CodeUnavailable,
		Message:    "The token issuer's keys cannot be fetched right now; try again shortly.",
		RetryAfter: 5,
		Err:        err,
	}
}

func invalid(reason string, err error) *wire.Error {
	return &wire.Error{Code: wire.CodeInvalidToken, Message: "The access token is invalid or expired.", Reason: reason, Err: err}
}

// oidcReason labels a go-oidc verification failure (its errors are
// formatted with %v, so their text is all there is).
func oidcReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, errUnknownKey.Error()):
		return "unknown_key"
	case strings.Contains(msg, "different provider"):
		return "issuer"
	case strings.Contains(msg, "malformed"), strings.Contains(msg, "unmarshal"):
		return "malformed"
	default:
		return "signature"
	}
}

// forbiddenHeaders point a verifier at keys chosen by the token's author, or
// demand processing we do not do. Clerk never sends them; refusing them
// outright means no library default can ever honour them.
var forbiddenHeaders = []string{"jwk", "jku", "x5u", "x5c", "crit"}

// precheck rejects anything that is not a compact JWS with an allowed alg
// and no forbidden header, without touching keys or the network.
func precheck(raw string) error {
	if len(raw) > MaxTokenBytes {
		return fmt.Errorf("token is %d bytes, over the %d limit", len(raw), MaxTokenBytes)
	}
	if strings.Count(raw, ".") != 2 {
		return errors.New("not a compact JWS (want 3 dot-separated parts)")
	}
	seg, _, _ := strings.Cut(raw, ".")
	hdr, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return errors.New("header is not base64url")
	}
	var h map[string]json.RawMessage
	if err := json.Unmarshal(hdr, &h); err != nil {
		return errors.New("header is not a JSON object")
	}
	var alg string
	if err := json.Unmarshal(h["alg"], &alg); err != nil || !slices.Contains(allowedAlgs, jose.SignatureAlgorithm(alg)) {
		return fmt.Errorf("alg %.20q not allowed", alg)
	}
	for _, name := range forbiddenHeaders {
		if _, ok := h[name]; ok {
			return fmt.Errorf("header %q not allowed", name)
		}
	}
	return nil
}

// newFetcher returns the JWKS fetch function: from jwksURL when set, else
// from the jwks_uri of the issuer's discovery document (cached once found).
func newFetcher(client *http.Client, issuer, jwksURL string) func(context.Context) ([]jose.JSONWebKey, error) {
	var (
		mu       sync.Mutex
		resolved = jwksURL
	)
	return func(ctx context.Context) ([]jose.JSONWebKey, error) {
		mu.Lock()
		u := resolved
		mu.Unlock()
		if u == "" {
			d, err := discover(ctx, client, issuer)
			if err != nil {
				return nil, err
			}
			mu.Lock()
			resolved, u = d, d
			mu.Unlock()
		}
		return fetchJWKS(client, u)(ctx)
	}
}

// discover reads jwks_uri from $issuer/.well-known/openid-configuration and
// checks that the document is the issuer's own.
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	if err := getJSON(ctx, client, u, &doc); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("discovery: document names issuer %q, want %q", doc.Issuer, issuer)
	}
	if doc.JWKSURI == "" {
		return "", errors.New("discovery: no jwks_uri")
	}
	return doc.JWKSURI, nil
}
