package auth_test

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // crypto.SHA512, for RS512
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/auth"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestVerifyRefusesDisallowedAlgsOffline: a token whose header names an
// algorithm other than RS256 or ES256 is refused as malformed by the
// structural check, before any key is fetched — even one the issuer's own
// key signed (RS512, PS256). go-oidc refuses these too ("unexpected
// signature algorithm"), but only after loading the issuer's keys: junk
// would cost requests to Clerk, and while Clerk is down it would be
// answered unavailable (retry) instead of invalid_token.
func TestVerifyRefusesDisallowedAlgsOffline(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	up := newVerifier(t, iss, clk, nil)
	down, err := auth.New(auth.Options{Issuer: "http://127.0.0.1:9", Audiences: []string{aud}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	key := iss.SigningKey()
	priv := key.Key.(*rsa.PrivateKey)
	claims := iss.Claims("user_1", aud, "", "")
	hdr := func(alg any) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": key.KeyID} }
	// signRSA signs with the issuer's key, PKCS #1 v1.5 or PSS.
	signRSA := func(h crypto.Hash, pss bool) func([]byte) []byte {
		return func(in []byte) []byte {
			d := h.New()
			d.Write(in)
			sign := rsa.SignPKCS1v15
			if pss {
				sign = func(r io.Reader, k *rsa.PrivateKey, h crypto.Hash, digest []byte) ([]byte, error) {
					return rsa.SignPSS(r, k, h, digest, nil)
				}
			}
			sig, err := sign(rand.Reader, priv, h, d.Sum(nil))
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}
	}
	pub, err := json.Marshal(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{
		"none": testenv.Forge(t, hdr("none"), claims, func([]byte) []byte { return nil }),
		"HS256 keyed with the public JWK": testenv.Forge(t, hdr("HS256"), claims, func(in []byte) []byte {
			m := hmac.New(sha256.New, pub)
			m.Write(in)
			return m.Sum(nil)
		}),
		"RS512 by the issuer's key": testenv.Forge(t, hdr("RS512"), claims, signRSA(crypto.SHA512, false)),
		"PS256 by the issuer's key": testenv.Forge(t, hdr("PS256"), claims, signRSA(crypto.SHA256, true)),
		"rs256 in lower case":       testenv.Forge(t, hdr("rs256"), claims, signRSA(crypto.SHA256, false)),
		"alg not a string":          testenv.Forge(t, hdr(256), claims, signRSA(crypto.SHA256, false)),
	}
	type refusal struct {
		Code, Reason string
	}
	for name, tok := range tokens {
		t.Run(name, func(t *testing.T) {
			for via, v := range map[string]*auth.Verifier{"issuer up": up, "issuer down": down} {
				_, err := v.Verify(context.Background(), tok)
				var got refusal
				if we, ok := errors.AsType[*wire.Error](err); ok {
					got = refusal{we.Code, we.Reason}
				}
				if diff := cmp.Diff(refusal{wire.CodeInvalidToken, "malformed"}, got); diff != "" {
					t.Errorf("%s: Verify = %v (-want +got):\n%s", via, err, diff)
				}
			}
		})
	}
	if n := iss.DiscoveryFetches.Load() + iss.JWKSFetches.Load(); n != 0 {
		t.Errorf("%d requests to the issuer for tokens of disallowed algorithms, want 0", n)
	}
	// The issuer was reachable all along: a valid token loads its keys.
	if _, err := up.Verify(context.Background(), iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatal(err)
	}
}
