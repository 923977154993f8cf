package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/auth"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/shared/wire"
)

const aud = "sas-api"

func newVerifier(t *testing.T, iss *testenv.Issuer, clk *testenv.Clock, mod func(*auth.Options)) *auth.Verifier {
	t.Helper()
	opts := auth.Options{Issuer: iss.Issuer(), Audiences: []string{aud, "sas-local"}, Now: clk.Now, Logger: testenv.Logger(t)}
	if mod != nil {
		mod(&opts)
	}
	v, err := auth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyAcceptsValidTokens(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			clk := &testenv.Clock{}
			iss := testenv.NewIssuer(t, alg, clk.Now)
			v := newVerifier(t, iss, clk, nil)
			tok := iss.Token(t, "user_abc123", aud, "steve@example.com", "Steve", map[string]any{"username": "steve"})
			id, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Subject != "user_abc123" || id.Email != "steve@example.com" || id.Username != "steve" {
				t.Errorf("identity = %+v", id)
			}
		})
	}
}

func TestVerifyUsernameFallbacks(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	v := newVerifier(t, iss, clk, nil)
	for _, tc := range []struct {
		name  string
		extra map[string]any
		want  string
	}{
		{"username wins", map[string]any{"username": "u", "preferred_username": "p", "name": "n"}, "u"},
		{"then preferred_username", map[string]any{"preferred_username": "p", "name": "n"}, "p"},
		{"then name", map[string]any{"preferred_username": nil, "name": "n"}, "n"},
		{"else empty", map[string]any{"preferred_username": nil, "name": nil}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), iss.Token(t, "user_1", aud, "a@b.c", "", tc.extra))
			if err != nil {
				t.Fatal(err)
			}
			if id.Username != tc.want {
				t.Errorf("username = %q, want %q", id.Username, tc.want)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	v := newVerifier(t, iss, clk, nil)
	now := clk.Now().Unix()
	for _, tc := range []struct {
		name   string
		extra  map[string]any
		accept bool
	}{
		{"expired 30s ago", map[string]any{"exp": now - 30}, true},
		{"expired 90s ago", map[string]any{"exp": now - 90}, false},
		{"nbf in 30s", map[string]any{"nbf": now + 30}, true},
		{"nbf in 120s", map[string]any{"nbf": now + 120}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), iss.Token(t, "user_1", aud, "", "", tc.extra))
			if (err == nil) != tc.accept {
				t.Fatalf("accept = %v, want %v (err %v)", err == nil, tc.accept, err)
			}
			if err != nil && wire.ErrorCode(err) != wire.CodeInvalidToken {
				t.Errorf("code = %s, want invalid_token", wire.ErrorCode(err))
			}
		})
	}
}

// TestVerifyRefusesBadTokens runs the catalogue of hostile and broken
// tokens; each must be refused as invalid_token, without a message that
// quotes it, and without refetching the JWKS for each.
func TestVerifyRefusesBadTokens(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	v := newVerifier(t, iss, clk, func(o *auth.Options) { o.AuthorizedParties = []string{aud, "sas-local"} })
	bad := testenv.HostileTokens(t, iss, aud)
	if _, err := v.Verify(context.Background(), bad.Valid); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	for name, tok := range bad.Tokens {
		t.Run(name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tok)
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if got := wire.ErrorCode(err); got != wire.CodeInvalidToken {
				t.Errorf("code = %s, want invalid_token (err %v)", got, err)
			}
			if strings.Contains(err.(*wire.Error).Message, tok) {
				t.Error("client message contains the token")
			}
		})
	}
	// Every hostile token names the real kid: no refresh is due at all.
	if n := iss.JWKSFetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

// TestVerifyUnknownKidFlood: 500 tokens with fresh random kids must not
// make us fetch the JWKS more than twice (initial load + one refresh).
func TestVerifyUnknownKidFlood(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	v := newVerifier(t, iss, clk, nil)
	attacker, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	claims := iss.Claims("user_evil", aud, "", "")
	var wg sync.WaitGroup
	for i := range 500 {
		tok := testenv.Forge(t, map[string]any{"alg": "RS256", "kid": fmt.Sprintf("kid-%d", i)}, claims, testenv.RS256(t, attacker))
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), tok); wire.ErrorCode(err) != wire.CodeInvalidToken {
				t.Errorf("code = %s, want invalid_token", wire.ErrorCode(err))
			}
		})
	}
	wg.Wait()
	if n := iss.JWKSFetches.Load(); n < 1 || n > 2 {
		t.Errorf("JWKS fetched %d times, want 1 or 2", n)
	}
	// Valid tokens still verify from the cache.
	if _, err := v.Verify(context.Background(), iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyKeyRotation: a key the issuer rotates in is accepted without a
// restart; the refresh cooldown holds for the next rotation until 30 s pass.
func TestVerifyKeyRotation(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	var refreshed atomic.Int64
	v := newVerifier(t, iss, clk, func(o *auth.Options) {
		o.OnRefresh = func(err error) {
			if err != nil {
				t.Errorf("OnRefresh(%v) for a fetch that worked", err)
			}
			refreshed.Add(1)
		}
	})
	ctx := context.Background()
	if _, err := v.Verify(ctx, iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatal(err)
	}
	if err := iss.Rotate(false); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatalf("token of the rotated-in key refused: %v", err)
	}
	if n := iss.JWKSFetches.Load(); n != 2 {
		t.Fatalf("JWKS fetches = %d, want 2 (initial + refresh)", n)
	}
	if n := refreshed.Load(); n != 2 {
		t.Errorf("OnRefresh called %d times for 2 fetches", n)
	}
	// A second rotation within the cooldown is not picked up yet…
	if err := iss.Rotate(false); err != nil {
		t.Fatal(err)
	}
	tok := iss.Token(t, "user_1", aud, "", "", nil)
	if _, err := v.Verify(ctx, tok); wire.ErrorCode(err) != wire.CodeInvalidToken {
		t.Fatalf("within cooldown: err = %v, want invalid_token", err)
	}
	if n := iss.JWKSFetches.Load(); n != 2 {
		t.Fatalf("JWKS fetches = %d during cooldown, want 2", n)
	}
	// …and is once the cooldown has passed.
	clk.Advance(auth.RefreshCooldown + time.Second)
	if _, err := v.Verify(ctx, iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatalf("after cooldown: %v", err)
	}
}

// TestVerifyCacheKeepsChecking: a token verified once is served from the
// cache, but still expires on time, and stops verifying as soon as the
// issuer withdraws its key.
func TestVerifyCacheKeepsChecking(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	v := newVerifier(t, iss, clk, nil)
	ctx := context.Background()
	tok := iss.Token(t, "user_1", aud, "", "", map[string]any{"exp": clk.Now().Unix() + 120})
	for range 3 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(120*time.Second + auth.Leeway - time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(ctx, tok); wire.ErrorCode(err) != wire.CodeInvalidToken {
		t.Fatalf("cached token past exp+leeway: err = %v, want invalid_token", err)
	}

	old := iss.Token(t, "user_1", aud, "", "", nil)
	if _, err := v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := iss.Rotate(false); err != nil { // withdraw the old key
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatal(err) // new kid: refresh, which drops the old key
	}
	if _, err := v.Verify(ctx, old); wire.ErrorCode(err) != wire.CodeInvalidToken {
		t.Fatalf("token of a withdrawn key still accepted from the cache: %v", err)
	}
}

func TestVerifyJWKSURLOverride(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "ES256", clk.Now)
	v := newVerifier(t, iss, clk, func(o *auth.Options) { o.JWKSURL = iss.Issuer() + "/.well-known/jwks.json" })
	if _, err := v.Verify(context.Background(), iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatal(err)
	}
	if n := iss.DiscoveryFetches.Load(); n != 0 {
		t.Errorf("discovery fetched %d times with CLERK_JWKS_URL set, want 0", n)
	}
}

// TestVerifyIssuerDown: keys that cannot be fetched are "unavailable"
// (retry later), not "invalid_token" (which would make clients sign in
// again for nothing).
func TestVerifyIssuerDown(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	tok := iss.Token(t, "user_1", aud, "", "", nil)
	v, err := auth.New(auth.Options{Issuer: "http://127.0.0.1:9", Audiences: []string{aud}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), tok)
	if got := wire.ErrorCode(err); got != wire.CodeUnavailable {
		t.Fatalf("code = %s, want unavailable (err %v)", got, err)
	}
}

// TestVerifyIssuerDownAfterRotation (found writing the JWKS alert's
// runbook): a token signed with a key the gateway has not seen, while the
// issuer's key set cannot be fetched, is unavailable (503, retry), not an
// invalid token (401 would sign the user out of the app), also within the
// refresh cooldown (which asks the issuer nothing); once the issuer is
// back and the cooldown over, the token verifies.
func TestVerifyIssuerDownAfterRotation(t *testing.T) {
	clk := &testenv.Clock{}
	iss := testenv.NewIssuer(t, "RS256", clk.Now)
	var failed atomic.Int64
	v := newVerifier(t, iss, clk, func(o *auth.Options) {
		o.OnRefresh = func(err error) {
			if err != nil {
				failed.Add(1)
			}
		}
	})
	ctx := context.Background()
	if _, err := v.Verify(ctx, iss.Token(t, "user_1", aud, "", "", nil)); err != nil {
		t.Fatal(err)
	}
	iss.JWKSDown.Store(true)
	if err := iss.Rotate(false); err != nil {
		t.Fatal(err)
	}
	tok := iss.Token(t, "user_1", aud, "", "", nil)
	if _, err := v.Verify(ctx, tok); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Fatalf("new key, issuer down: %v, want unavailable", err)
	}
	if failed.Load() != 1 {
		t.Errorf("OnRefresh saw %d failures, want 1", failed.Load())
	}
	if _, err := v.Verify(ctx, tok); wire.ErrorCode(err) != wire.CodeUnavailable || iss.JWKSFetches.Load() != 2 {
		t.Errorf("within the cooldown: %v after %d fetches, want unavailable and no new fetch", err, iss.JWKSFetches.Load())
	}
	iss.JWKSDown.Store(false)
	clk.Advance(auth.RefreshCooldown + time.Second)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Errorf("issuer back: %v", err)
	}
}

// TestVerifyFailingIssuerIsNotHammered: while the first key load fails,
// junk tokens do not each trigger a fetch; a retry happens after the backoff.
func TestVerifyFailingIssuerIsNotHammered(t *testing.T) {
	clk := &testenv.Clock{}
	var fetches atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer srv.Close()
	var failed atomic.Int64
	v, err := auth.New(auth.Options{Issuer: "https://clerk.example.com", JWKSURL: srv.URL, Audiences: []string{aud}, Now: clk.Now,
		OnRefresh: func(err error) {
			if err != nil {
				failed.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	junk := testenv.B64JSON(t, map[string]any{"alg": "RS256", "kid": "x"}) + "." + testenv.B64JSON(t, map[string]any{}) + ".c2ln"
	for range 200 {
		if _, err := v.Verify(context.Background(), junk); wire.ErrorCode(err) != wire.CodeUnavailable {
			t.Fatalf("err = %v, want unavailable", err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches for 200 tokens during an outage, want 1", n)
	}
	clk.Advance(6 * time.Second)
	_, _ = v.Verify(context.Background(), junk)
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches after the backoff, want 2", n)
	}
	if n := failed.Load(); n != 2 {
		t.Errorf("OnRefresh saw %d failures of 2 failed fetches", n)
	}
}

// BenchmarkVerify measures a full verification (signature, claims) and a
// repeated token served from the verified-token cache.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		iss := testenv.NewIssuer(b, alg, nil)
		v, err := auth.New(auth.Options{Issuer: iss.Issuer(), Audiences: []string{aud}})
		if err != nil {
			b.Fatal(err)
		}
		tok := iss.Token(b, "user_1", aud, "a@b.c", "A", nil)
		ctx := context.Background()
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.Run(alg+"/full", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := auth.VerifyUncached(v, ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
