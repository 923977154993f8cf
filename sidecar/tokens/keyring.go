package tokens

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// Keyring item names (contract, "Token storage"): service sas-<profile>,
// one account per value.
const (
	AccountIDToken      = "id_token"
	AccountRefreshToken = "refresh_token"
	AccountExpiry       = "expiry"
)

// MaxItemBytes is the largest value stored as one keyring item: Windows'
// Credential Manager refuses blobs over 2,560 bytes and macOS about 2.9 KB.
// Larger values go into numbered parts.
const MaxItemBytes = 2500

// partsPrefix marks an item whose value is split: "sas-parts:N" means the
// value is the concatenation of items <account>.1 … <account>.N.
const partsPrefix = "sas-parts:"

// KeyringTimeout bounds every keyring call: a Secret Service that waits on
// an unlock prompt nobody answers must not hang a CLI or the sidecar.
const KeyringTimeout = 5 * time.Second

// Keyring is the OS keyring (zalando/go-keyring's functions).
type Keyring interface {
	Get(service, account string) (string, error)
	Set(service, account, value string) error
	Delete(service, account string) error
}

type osKeyring struct{}

func (osKeyring) Get(s, a string) (string, error) { return keyring.Get(s, a) }
func (osKeyring) Set(s, a, v string) error        { return keyring.Set(s, a, v) }
func (osKeyring) Delete(s, a string) error        { return keyring.Delete(s, a) }

// KeyringStore keeps a Set in the OS keyring.
type KeyringStore struct {
	service string
	kr      Keyring
}

// NewKeyringStore returns the store of profile in kr (the OS keyring when nil).
func NewKeyringStore(profile string, kr Keyring) *KeyringStore {
	if kr == nil {
		kr = osKeyring{}
	}
	return &KeyringStore{service: "sas-" + profile, kr: kr}
}

// call runs f with KeyringTimeout, mapping "cannot reach the keyring" to
// ErrUnavailable and keyring.ErrNotFound to ErrNotFound.
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ctx, cancel := context.WithTimeout(ctx, KeyringTimeout)
	defer cancel()
	ch := make(chan result, 1)
	go func() { v, err := f(); ch <- result{v, err} }()
	select {
	case r := <-ch:
		switch {
		case r.err == nil:
			return r.v, nil
		case errors.Is(r.err, keyring.ErrNotFound):
			return r.v, ErrNotFound
		default:
			return r.v, fmt.Errorf("%w (%v)", ErrUnavailable, r.err)
		}
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w (no answer within %v)", ErrUnavailable, KeyringTimeout)
	}
}

func (k *KeyringStore) get(ctx context.Context, account string) (string, error) {
	return call(ctx, func() (string, error) { return k.kr.Get(k.service, account) })
}

func (k *KeyringStore) set(ctx context.Context, account, value string) error {
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, k.kr.Set(k.service, account, value) })
	return err
}

func (k *KeyringStore) del(ctx context.Context, account string) error {
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, k.kr.Delete(k.service, account) })
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// readValue reads an account, joining its parts when it was split.
func (k *KeyringStore) readValue(ctx context.Context, account string) (string, error) {
	v, err := k.get(ctx, account)
	if err != nil {
		return "", err
	}
	n, split := partCount(v)
	if !split {
		return v, nil
	}
	var b strings.Builder
	for i := 1; i <= n; i++ {
		part, err := k.get(ctx, account+"."+strconv.Itoa(i))
		if err != nil {
			return "", fmt.Errorf("read part %d of %d of %s: %w", i, n, account, err)
		}
		b.WriteString(part)
	}
	return b.String(), nil
}

// writeValue stores a value whole when it fits, else in numbered parts, and
// removes parts a longer previous value left behind.
func (k *KeyringStore) writeValue(ctx context.Context, account, value string) error {
	old, _ := k.get(ctx, account)
	oldParts, _ := partCount(old)
	newParts := 0
	if len(value) > MaxItemBytes {
		for i := 0; i*MaxItemBytes < len(value); i++ {
			part := value[i*MaxItemBytes : min((i+1)*MaxItemBytes, len(value))]
			if err := k.set(ctx, account+"."+strconv.Itoa(i+1), part); err != nil {
				return err
			}
			newParts = i + 1
		}
		value = partsPrefix + strconv.Itoa(newParts)
	}
	// The marker goes last: a reader never sees it before its parts.
	if err := k.set(ctx, account, value); err != nil {
		return err
	}
	for i := newParts + 1; i <= oldParts; i++ {
		if err := k.del(ctx, account+"."+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

func partCount(v string) (int, bool) {
	rest, ok := strings.CutPrefix(v, partsPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	return n, err == nil && n > 0 && n < 100
}

// Load implements Store.
func (k *KeyringStore) Load(ctx context.Context) (Set, error) {
	id, err := k.readValue(ctx, AccountIDToken)
	if err != nil {
		return Set{}, err
	}
	s := Set{IDToken: id}
	if s.RefreshToken, err = k.readValue(ctx, AccountRefreshToken); err != nil && !errors.Is(err, ErrNotFound) {
		return Set{}, err
	}
	exp, err := k.get(ctx, AccountExpiry)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Set{}, err
	}
	s.Expiry, _ = time.Parse(time.RFC3339, exp) // unreadable: zero, which means "refresh"
	return s, nil
}

// Save implements Store. The refresh token and expiry are written before
// the ID token, whose presence is what "signed in" means.
func (k *KeyringStore) Save(ctx context.Context, s Set) error {
	if s.RefreshToken == "" {
		if err := k.deleteValue(ctx, AccountRefreshToken); err != nil {
			return err
		}
	} else if err := k.writeValue(ctx, AccountRefreshToken, s.RefreshToken); err != nil {
		return err
	}
	if err := k.set(ctx, AccountExpiry, s.Expiry.UTC().Format(time.RFC3339)); err != nil {
		return err
	}
	return k.writeValue(ctx, AccountIDToken, s.IDToken)
}

func (k *KeyringStore) deleteValue(ctx context.Context, account string) error {
	v, err := k.get(ctx, account)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	n, _ := partCount(v)
	if err := k.del(ctx, account); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := k.del(ctx, account+"."+strconv.Itoa(i)); err != nil {
			return err
		}
	}
	return nil
}

// Delete implements Store.
func (k *KeyringStore) Delete(ctx context.Context) error {
	for _, a := range []string{AccountIDToken, AccountRefreshToken} {
		if err := k.deleteValue(ctx, a); err != nil {
			return err
		}
	}
	return k.del(ctx, AccountExpiry)
}
