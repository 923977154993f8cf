// Package tokens keeps a signed-in user's tokens: the Set, the Store
// interface with its keyring and file backends, and the per-user lock that
// serialises refreshes across processes (sas-login and sas-sidecar share
// one store).
package tokens

import (
	"context"
	"errors"
	"time"
)

// Set is what a sign-in leaves behind.
type Set struct {
	IDToken      string // the JWT the gateway verifies
	RefreshToken string // may be empty when the provider gave none
}

// Expiry is the ID token's exp claim, read from the token itself whatever
// the store (a stored expiry could disagree with the token beside it); zero
// when unreadable, which means "refresh".
func (s Set) Expiry() time.Time { return ExpiryOf(s.IDToken) }

// FreshFor reports whether the ID token stays valid for at least margin.
func (s Set) FreshFor(now time.Time, margin time.Duration) bool {
	return s.IDToken != "" && now.Add(margin).Before(s.Expiry())
}

// Profile is who signed in, as the sign-in learnt it: the ID token's
// claims, completed from the provider's userinfo endpoint when the token
// lacks them (OpenID Connect Core §5.4 lets a provider serve them only
// there). It is kept beside the tokens because status reads no network;
// it belongs to Subject and says nothing about a token of another subject.
type Profile struct {
	Subject  string `json:"sub"`
	Email    string `json:"email,omitempty"`
	Username string `json:"username,omitempty"`
}

// ErrNotFound means the store holds no session for the profile (from
// LoadProfile: no user profile).
var ErrNotFound = errors.New("not signed in")

// ErrUnavailable means the OS keyring cannot be reached.
var ErrUnavailable = errors.New("the OS keyring is not available (no Secret Service, or it is locked): use --token-store file (or SAS_TOKEN_STORE=file) to keep tokens in a 0600 file instead")

// Store keeps the Set of one configuration profile (prod, dev, local) and
// the Profile of its user.
type Store interface {
	// Load returns the stored set. Errors: ErrNotFound, ErrUnavailable.
	Load(ctx context.Context) (Set, error)
	// Save replaces the stored set. Errors: ErrUnavailable.
	Save(ctx context.Context, s Set) error
	// LoadProfile returns the stored profile. Errors: ErrNotFound,
	// ErrUnavailable.
	LoadProfile(ctx context.Context) (Profile, error)
	// SaveProfile replaces the stored profile. Errors: ErrUnavailable.
	SaveProfile(ctx context.Context, p Profile) error
	// Delete removes every stored item, the profile too; deleting nothing
	// is not an error.
	Delete(ctx context.Context) error
}
