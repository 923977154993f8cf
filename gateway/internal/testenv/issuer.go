package testenv

import (
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/devidp"
)

// Issuer is a dev identity provider serving on 127.0.0.1, standing in for
// Clerk with the same wire protocol (discovery + JWKS).
type Issuer struct {
	*devidp.Provider
	// JWKSFetches counts GETs of the key set.
	JWKSFetches atomic.Int64
	// DiscoveryFetches counts GETs of the discovery documents.
	DiscoveryFetches atomic.Int64
	// JWKSDown makes the key set answer 503, as an issuer in an outage.
	JWKSDown atomic.Bool
}

// NewIssuer starts an Issuer signing with alg ("RS256" or "ES256") on the
// given clock (nil: the wall clock) and stops it when t ends.
func NewIssuer(t testing.TB, alg string, now func() time.Time) *Issuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p, err := devidp.New(devidp.Options{Issuer: "http://" + ln.Addr().String(), Alg: alg, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{Provider: p}
	h := p.Handler()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/jwks.json"):
			iss.JWKSFetches.Add(1)
			if iss.JWKSDown.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
		case strings.Contains(r.URL.Path, "/.well-known/"):
			iss.DiscoveryFetches.Add(1)
		}
		h.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return iss
}

// Token mints a valid token for sub with audience aud and the given email
// and name; extra claims override the defaults (a nil value deletes one).
func (i *Issuer) Token(t testing.TB, sub, aud, email, name string, extra map[string]any) string {
	t.Helper()
	c := i.Claims(sub, aud, email, name)
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok, err := i.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
