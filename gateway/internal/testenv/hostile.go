package testenv

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// Hostile is a catalogue of tokens that a verifier for Issuer iss and
// audience aud must refuse, plus one valid control token built the same
// way (so a test of the catalogue proves its forging works).
type Hostile struct {
	Valid  string
	Tokens map[string]string
}

// HostileTokens builds the catalogue for an RS256 issuer: algorithm
// confusion, forged and tampered signatures, broken claims, attacker-chosen
// key headers, wrong formats and sizes.
func HostileTokens(t testing.TB, iss *Issuer, aud string) Hostile {
	t.Helper()
	real := iss.SigningKey()
	realKey, ok := real.Key.(*rsa.PrivateKey)
	if !ok {
		t.Fatal("HostileTokens needs an RS256 issuer")
	}
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := iss.Claims("user_evil", aud, "evil@example.com", "Evil")
	now := claims["iat"].(int64)
	hdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": real.KeyID}
		maps.Copy(h, extra)
		return h
	}
	with := func(mod map[string]any) map[string]any {
		c := maps.Clone(claims)
		for k, v := range mod {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	signed := func(c map[string]any) string { return Forge(t, hdr(nil), c, RS256(t, realKey)) }
	valid := signed(claims)
	parts := strings.Split(valid, ".")
	attackerJWK := jose.JSONWebKey{Key: attacker.Public(), KeyID: real.KeyID, Algorithm: "RS256", Use: "sig"}
	pubDER, _ := x509.MarshalPKIXPublicKey(realKey.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	enc, err := jose.NewEncrypter(jose.A128GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: realKey.Public()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jweObj, err := enc.Encrypt([]byte(`{"sub":"user_evil"}`))
	if err != nil {
		t.Fatal(err)
	}
	jwe, _ := jweObj.CompactSerialize()

	return Hostile{Valid: valid, Tokens: map[string]string{
		"alg none":          B64JSON(t, map[string]any{"alg": "none", "typ": "JWT"}) + "." + B64JSON(t, claims) + ".",
		"alg none with kid": Forge(t, hdr(map[string]any{"alg": "none"}), claims, func([]byte) []byte { return nil }),
		"HS256 keyed with the RSA public key": Forge(t, hdr(map[string]any{"alg": "HS256"}), claims, func(in []byte) []byte {
			m := hmac.New(sha256.New, pubPEM)
			m.Write(in)
			return m.Sum(nil)
		}),
		"tampered payload":             parts[0] + "." + B64JSON(t, with(map[string]any{"sub": "user_admin"})) + "." + parts[2],
		"signature of another message": parts[0] + "." + parts[1] + "." + b64(RS256(t, realKey)([]byte("other"))),
		"unknown key with a known kid": Forge(t, hdr(nil), claims, RS256(t, attacker)),
		"expired beyond leeway":        signed(with(map[string]any{"exp": now - 90})),
		"nbf in the future":            signed(with(map[string]any{"nbf": now + 600})),
		"wrong iss":                    signed(with(map[string]any{"iss": "https://evil.example.com"})),
		"wrong aud":                    signed(with(map[string]any{"aud": "someone-else", "azp": nil})),
		"missing aud":                  signed(with(map[string]any{"aud": nil})),
		"missing exp":                  signed(with(map[string]any{"exp": nil})),
		"missing sub":                  signed(with(map[string]any{"sub": nil})),
		"azp not allowed":              signed(with(map[string]any{"azp": "other-app"})),
		"garbage":                      "not-a-jwt",
		"garbage with dots":            "a.b.c",
		"5-part JWE":                   jwe,
		"JSON serialization":           `{"payload":"` + parts[1] + `","signatures":[]}`,
		"jwk header with attacker key": Forge(t, hdr(map[string]any{"jwk": attackerJWK}), claims, RS256(t, attacker)),
		"jku header to attacker keys":  Forge(t, hdr(map[string]any{"jku": "http://127.0.0.1:9/jwks.json"}), claims, RS256(t, attacker)),
		"x5u header to attacker certs": Forge(t, hdr(map[string]any{"x5u": "http://127.0.0.1:9/cert.pem"}), claims, RS256(t, attacker)),
		"crit header":                  Forge(t, hdr(map[string]any{"crit": []string{"exp"}, "exp": 1}), claims, RS256(t, realKey)),
		"10 KB token":                  signed(with(map[string]any{"pad": strings.Repeat("x", 10<<10)})),
	}}
}

// Forge builds a compact JWS by hand, so tests control every header; sign
// gets the signing input and returns the signature.
func Forge(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	input := B64JSON(t, header) + "." + B64JSON(t, claims)
	return input + "." + b64(sign([]byte(input)))
}

// RS256 returns a signer for Forge.
func RS256(t testing.TB, key *rsa.PrivateKey) func([]byte) []byte {
	return func(input []byte) []byte {
		h := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// B64JSON is the base64url (unpadded) JSON encoding of v.
func B64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
