package devidp_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/signals-sorcery/sas/gateway/devidp"
)

func get(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s = %d %q", path, w.Code, w.Header().Get("Content-Type"))
	}
	if err := json.Unmarshal(w.Body.Bytes(), v); err != nil {
		t.Fatal(err)
	}
}

// TestDiscoveryDocuments: both documents Clerk clients read name the
// issuer exactly and point at the JWKS.
func TestDiscoveryDocuments(t *testing.T) {
	p, err := devidp.New(devidp.Options{Issuer: "http://127.0.0.1:8080/dev/idp/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		var doc map[string]any
		get(t, p.Handler(), path, &doc)
		if doc["issuer"] != "http://127.0.0.1:8080/dev/idp" || doc["jwks_uri"] != "http://127.0.0.1:8080/dev/idp/.well-known/jwks.json" {
			t.Errorf("%s = %v", path, doc)
		}
	}
}

// TestRotation: a graceful rotation publishes old and new keys, a hard one
// only the new; tokens carry the current key's kid; no private part leaks.
func TestRotation(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		p, err := devidp.New(devidp.Options{Issuer: "http://127.0.0.1:1", Alg: alg})
		if err != nil {
			t.Fatal(err)
		}
		first := p.SigningKey().KeyID
		if err := p.Rotate(true); err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		get(t, p.Handler(), "/.well-known/jwks.json", &set)
		if len(set.Keys) != 2 || set.Keys[0].KeyID != first {
			t.Fatalf("%s after graceful rotation: %d keys", alg, len(set.Keys))
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || k.Algorithm != alg || k.Use != "sig" {
				t.Errorf("%s published key %s: public=%v alg=%s use=%s", alg, k.KeyID, k.IsPublic(), k.Algorithm, k.Use)
			}
		}
		if err := p.Rotate(false); err != nil {
			t.Fatal(err)
		}
		get(t, p.Handler(), "/.well-known/jwks.json", &set)
		if len(set.Keys) != 1 || set.Keys[0].KeyID != p.SigningKey().KeyID {
			t.Fatalf("%s after hard rotation: %+v", alg, set.Keys)
		}
		tok, err := p.Sign(p.Claims("user_1", "aud", "a@b.c", "A"))
		if err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
		if err != nil {
			t.Fatal(err)
		}
		if kid := jws.Signatures[0].Header.KeyID; kid != p.SigningKey().KeyID {
			t.Errorf("token kid %s, want current %s", kid, p.SigningKey().KeyID)
		}
		if _, err := jws.Verify(&set.Keys[0]); err != nil {
			t.Errorf("token does not verify with the published key: %v", err)
		}
	}
}
