package tokens

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/zalando/go-keyring"
)

// Keyring item names (contract, "Token storage"): service sas-<profile>,
// one account per value. AccountProfile holds the user's Profile as JSON.
const (
	AccountIDToken      = "id_token"
	AccountRefreshToken = "refresh_token"
	AccountExpiry       = "expiry"
	AccountProfile      = "profile"
)

// MaxItemBytes is the largest value stored as one keyring item: Windows'
// Credential Manager refuses blobs over 2,560 bytes and macOS about 2.9 KB.
// Larger values go into numbered parts.
const MaxItemBytes = 2500

// partsPrefix marks an item whose value is split: "sas-parts:G:N" means
// the value is the concatenation of items <account>.G.1 … <account>.G.N.
// Each write uses a new generation G, so a reader that races a writer
// joins the parts of one value — old or new — never a mix.
const partsPrefix = "sas-parts:"

// ErrDamaged means a split value lacks a part (a write was cut short).
var ErrDamaged = errors.New("the stored session is damaged: run sas-login logout, then sas-login login")

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

// NewKeyringStore returns the store of profile in kr (the OS keyring when
// nil: on macOS the Keychain through `security`, storing values as they
// are; elsewhere zalando/go-keyring's Secret Service or Credential Manager).
func NewKeyringStore(profile string, kr Keyring) *KeyringStore {
	if kr == nil {
		kr = osKeyring{}
		if runtime.GOOS == "darwin" {
			kr = Keychain{Security: "/usr/bin/security"}
		}
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
		case errors.Is(r.err, keyring.ErrSetDataTooBig):
			return r.v, fmt.Errorf("the OS keyring refused a value as too large: %w", r.err)
		default:
			return r.v, fmt.Errorf("%w (%v)", ErrUnavailable, r.err)
		}
	case <-ctx.Done():
		// The call goes on in its goroutine and may still complete: callers
		// write in an order that leaves a readable state either way.
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
	gen, n, split := parseParts(v)
	if !split {
		return v, nil
	}
	var b strings.Builder
	for i := 1; i <= n; i++ {
		part, err := k.get(ctx, partName(account, gen, i))
		if errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("%w (part %d of %d of %s is missing)", ErrDamaged, i, n, account)
		}
		if err != nil {
			return "", err
		}
		b.WriteString(part)
	}
	return b.String(), nil
}

func partName(account, gen string, i int) string {
	return account + "." + gen + "." + strconv.Itoa(i)
}

// writeValue stores a value whole when it fits, else in numbered parts of a
// new generation; the marker is written after its parts, and the previous
// generation's parts are deleted after the marker moved on.
func (k *KeyringStore) writeValue(ctx context.Context, account, value string) error {
	old, _ := k.get(ctx, account)
	if len(value) > MaxItemBytes {
		// Random, not the clock: Windows' clock moves in steps of up to
		// 15 ms, and two writes in one step shared a generation, so a
		// reader could join parts of both (seen under Wine).
		var g [8]byte
		_, _ = rand.Read(g[:])
		gen := hex.EncodeToString(g[:])
		n := 0
		for i := 0; i*MaxItemBytes < len(value); i++ {
			n = i + 1
			if err := k.set(ctx, partName(account, gen, n), value[i*MaxItemBytes:min((i+1)*MaxItemBytes, len(value))]); err != nil {
				return err
			}
		}
		value = partsPrefix + gen + ":" + strconv.Itoa(n)
	}
	if err := k.set(ctx, account, value); err != nil {
		return err
	}
	return k.deleteParts(ctx, account, old)
}

// deleteParts deletes the parts a marker value points at.
func (k *KeyringStore) deleteParts(ctx context.Context, account, marker string) error {
	gen, n, split := parseParts(marker)
	if !split {
		return nil
	}
	for i := 1; i <= n; i++ {
		if err := k.del(ctx, partName(account, gen, i)); err != nil {
			return err
		}
	}
	return nil
}

func parseParts(v string) (gen string, n int, ok bool) {
	rest, ok := strings.CutPrefix(v, partsPrefix)
	if !ok {
		return "", 0, false
	}
	gen, count, ok := strings.Cut(rest, ":")
	n, err := strconv.Atoi(count)
	return gen, n, ok && err == nil && gen != "" && n > 0 && n < 100
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
	// The expiry item is for people and tools that read the keychain: the
	// expiry is the ID token's own (Set.Expiry).
	return s, nil
}

// ExpiryOf returns the exp claim of a JWT (zero when unreadable, which
// means "refresh"). It does not verify: the token was verified when stored.
func ExpiryOf(jwt string) time.Time {
	var c struct {
		Exp json.Number `json:"exp"`
	}
	if StoredClaims(jwt, &c) != nil {
		return time.Time{}
	}
	f, err := c.Exp.Float64()
	if err != nil || f <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(f), 0)
}

// StoredClaims decodes the claims of a JWT this program verified and
// stored, into v. It does not verify: never use it on a token from
// elsewhere.
func StoredClaims(jwt string, v any) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
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
	if err := k.set(ctx, AccountExpiry, s.Expiry().UTC().Format(time.RFC3339)); err != nil {
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
	// Parts first, marker last: a deletion cut short can be retried, since
	// the marker still names what is left.
	if err := k.deleteParts(ctx, account, v); err != nil {
		return err
	}
	return k.del(ctx, account)
}

// LoadProfile implements Store.
func (k *KeyringStore) LoadProfile(ctx context.Context) (Profile, error) {
	v, err := k.readValue(ctx, AccountProfile)
	if err != nil {
		return Profile{}, err
	}
	return decodeProfile(v)
}

// SaveProfile implements Store.
func (k *KeyringStore) SaveProfile(ctx context.Context, p Profile) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return k.writeValue(ctx, AccountProfile, string(b))
}

// decodeProfile reads a stored profile; one without a subject belongs to
// nobody.
func decodeProfile(v string) (Profile, error) {
	var p Profile
	if err := json.Unmarshal([]byte(v), &p); err != nil || p.Subject == "" {
		return Profile{}, errors.New("the stored user profile is damaged: sign in again")
	}
	return p, nil
}

// Delete implements Store. The ID token goes first: without it nobody is
// signed in, whatever a deletion cut short leaves.
func (k *KeyringStore) Delete(ctx context.Context) error {
	for _, a := range []string{AccountIDToken, AccountRefreshToken, AccountProfile} {
		if err := k.deleteValue(ctx, a); err != nil {
			return err
		}
	}
	return k.del(ctx, AccountExpiry)
}
