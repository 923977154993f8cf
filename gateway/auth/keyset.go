package auth

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// errUnknownKey means the token names a key that the issuer does not publish
// (even after a refresh, or while a refresh is cooling down).
var errUnknownKey = errors.New("unknown signing key")

// errKeysUnavailable means the token names a key we do not have and the
// issuer's key set could not be fetched to look for it.
var errKeysUnavailable = errors.New("the issuer's keys cannot be fetched")

// keySet is an oidc.KeySet that caches the issuer's JWKS and refreshes it
// when a token names an unknown kid, at most once per cooldown.
//
// go-oidc's RemoteKeySet refetches on every unknown kid and on every failed
// signature, so a flood of forged tokens becomes a flood of requests to
// Clerk. Here a refresh happens only for an unknown kid, concurrent callers
// share one fetch, and after a refresh the next one waits for the cooldown.
// The initial load does not start the cooldown, so the first rotation after
// start is picked up at once.
type keySet struct {
	fetch    func(ctx context.Context) ([]jose.JSONWebKey, error)
	now      func() time.Time
	cooldown time.Duration // minimum time between refreshes
	maxAge   time.Duration // keys older than this are refetched (failures keep the old ones)
	// onKeyRemoved, when set, runs after a fetch that dropped a key we had.
	onKeyRemoved func()
	// onFetch, when set, runs after each fetch with its error.
	onFetch func(err error)

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	loadedAt    time.Time // zero until the first successful load
	refreshedAt time.Time // last refresh after the initial load; zero if none
	refreshErr  error     // its error, nil if it worked
	inflight    *fetchCall
	// While no key was ever loaded, failures are remembered for
	// initialBackoff so junk tokens cannot turn an issuer outage into one
	// fetch per request.
	initialFailedAt time.Time
	initialErr      error
}

// initialBackoff is how long a failed first load is answered from memory.
const initialBackoff = 5 * time.Second

type fetchCall struct {
	done chan struct{}
	err  error
}

// load makes sure keys are present. The first load blocks (there is
// nothing to verify with before it); keys older than maxAge are refetched in
// the background while the old ones keep serving. It fails only when there
// are no keys at all.
func (s *keySet) load(ctx context.Context) error {
	s.mu.Lock()
	now := s.now()
	loaded, stale := !s.loadedAt.IsZero(), now.Sub(s.loadedAt) > s.maxAge
	backingOff := !loaded && !s.initialFailedAt.IsZero() && now.Sub(s.initialFailedAt) < initialBackoff
	lastErr := s.initialErr
	s.mu.Unlock()
	switch {
	case loaded && !stale:
		return nil
	case loaded:
		go func() { _ = s.refresh(context.WithoutCancel(ctx), false, true) }()
		return nil
	case backingOff:
		return lastErr
	}
	return s.refresh(ctx, true, false)
}

// refresh fetches the key set, joining a fetch already in flight. With
// respectCooldown it does nothing (errUnknownKey) while the last refresh is
// more recent than the cooldown; the decision and the start of the fetch
// happen under one lock so a burst of callers starts at most one fetch.
func (s *keySet) refresh(ctx context.Context, initial, respectCooldown bool) error {
	s.mu.Lock()
	if c := s.inflight; c != nil {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if respectCooldown && !s.refreshedAt.IsZero() && s.now().Sub(s.refreshedAt) < s.cooldown {
		// Cooling down: the last refresh's answer stands — the key is
		// unknown, or the issuer could not be asked.
		err := cmp.Or(s.refreshErr, errUnknownKey)
		s.mu.Unlock()
		return err
	}
	c := &fetchCall{done: make(chan struct{})}
	s.inflight = c
	s.mu.Unlock()

	// The fetch outlives the caller that started it: others may be waiting.
	keys, err := s.fetch(context.WithoutCancel(ctx))

	s.mu.Lock()
	now := s.now()
	removed := false
	if err == nil {
		removed = dropsAKey(s.keys, keys)
		s.keys = keys
		s.loadedAt = now
	}
	if !initial {
		// A failed refresh counts too: retrying at once would hammer an
		// issuer that is already failing.
		s.refreshedAt, s.refreshErr = now, err
	} else if err != nil {
		s.initialFailedAt, s.initialErr = now, err
	}
	s.inflight = nil
	c.err = err
	s.mu.Unlock()
	if removed && s.onKeyRemoved != nil {
		s.onKeyRemoved()
	}
	if s.onFetch != nil {
		s.onFetch(err)
	}
	close(c.done)
	return err
}

// dropsAKey reports whether a key of old (same kid and key material) is
// missing from new.
func dropsAKey(old, new []jose.JSONWebKey) bool {
	for _, o := range old {
		ot, _ := o.Thumbprint(crypto.SHA256)
		if !slices.ContainsFunc(new, func(n jose.JSONWebKey) bool {
			nt, _ := n.Thumbprint(crypto.SHA256)
			return n.KeyID == o.KeyID && bytes.Equal(ot, nt)
		}) {
			return true
		}
	}
	return false
}

// VerifySignature implements oidc.KeySet. go-oidc has already checked the
// algorithm against the allowed list before calling it. A JWT is always the
// compact serialization (precheck refuses anything else), so the JSON one is
// not parsed here either.
func (s *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, allowedAlgs)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	kid := jws.Signatures[0].Header.KeyID
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	if key, ok := s.lookup(kid); ok {
		return jws.Verify(key)
	}
	if err := s.refresh(ctx, false, true); errors.Is(err, errUnknownKey) {
		return nil, err // cooling down: an unknown key stays unknown
	} else if err != nil {
		// Whether the token is good cannot be known until the issuer
		// answers: unavailable, not invalid.
		return nil, fmt.Errorf("%w: %w", errKeysUnavailable, err)
	}
	if key, ok := s.lookup(kid); ok {
		return jws.Verify(key)
	}
	return nil, errUnknownKey
}

// lookup finds the signing key with id kid. Tokens without a kid are
// accepted only when the issuer publishes exactly one signing key.
func (s *keySet) lookup(kid string) (*jose.JSONWebKey, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var found *jose.JSONWebKey
	n := 0
	for i := range s.keys {
		k := &s.keys[i]
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		n++
		if kid != "" && k.KeyID == kid {
			return k, true
		}
		found = k
	}
	return found, kid == "" && n == 1
}

// fetchJWKS returns a fetch function that GETs url with client.
func fetchJWKS(client *http.Client, url string) func(ctx context.Context) ([]jose.JSONWebKey, error) {
	return func(ctx context.Context) ([]jose.JSONWebKey, error) {
		ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		var set jose.JSONWebKeySet
		if err := getJSON(ctx, client, url, &set); err != nil {
			return nil, fmt.Errorf("fetch jwks: %w", err)
		}
		if len(set.Keys) == 0 {
			return nil, errors.New("fetch jwks: the key set is empty")
		}
		return set.Keys, nil
	}
}

// getJSON GETs url and decodes a JSON body of at most 1 MiB into v.
func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", url, err)
	}
	return nil
}
