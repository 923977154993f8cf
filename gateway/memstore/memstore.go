// Package memstore is an in-memory user store with the semantics of the
// postgres store, for `sas-gateway dev` without a DATABASE_URL. Users live
// as long as the process.
package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Store is safe for concurrent use.
type Store struct {
	now   func() time.Time
	mu    sync.Mutex
	users map[string]gateway.User
}

// New returns an empty Store on clock now (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, users: map[string]gateway.User{}}
}

// UpsertUser creates the user or updates email and username when they
// changed.
func (s *Store) UpsertUser(_ context.Context, id gateway.Identity) (gateway.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	u, ok := s.users[id.Subject]
	switch {
	case !ok:
		u = gateway.User{ClerkUserID: id.Subject, Email: id.Email, Username: id.Username,
			Plan: wire.PlanFree, Status: wire.StatusActive, CreatedAt: now, UpdatedAt: now}
	case u.Email != id.Email || u.Username != id.Username:
		u.Email, u.Username, u.UpdatedAt = id.Email, id.Username, now
	default:
		return u, nil
	}
	s.users[id.Subject] = u
	return u, nil
}

// User returns a user. Errors: not_found.
func (s *Store) User(_ context.Context, clerkUserID string) (gateway.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[clerkUserID]
	if !ok {
		return u, wire.Errorf(wire.CodeNotFound, "no user with Clerk id %q", clerkUserID)
	}
	return u, nil
}

// SetPlan changes a plan. Errors: bad_request, not_found.
func (s *Store) SetPlan(_ context.Context, clerkUserID, plan string) (gateway.User, error) {
	if !gateway.ValidPlan(plan) {
		return gateway.User{}, wire.Errorf(wire.CodeBadRequest, "plan must be %q or %q", wire.PlanFree, wire.PlanPro)
	}
	return s.update(clerkUserID, func(u *gateway.User) { u.Plan = plan })
}

// SetStatus changes a status. Errors: bad_request, not_found.
func (s *Store) SetStatus(_ context.Context, clerkUserID, status string) (gateway.User, error) {
	if !gateway.ValidStatus(status) {
		return gateway.User{}, wire.Errorf(wire.CodeBadRequest, "status must be %q or %q", wire.StatusActive, wire.StatusSuspended)
	}
	return s.update(clerkUserID, func(u *gateway.User) { u.Status = status })
}

func (s *Store) update(clerkUserID string, f func(*gateway.User)) (gateway.User, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[clerkUserID]
	if !ok {
		return u, wire.Errorf(wire.CodeNotFound, "no user with Clerk id %q", clerkUserID)
	}
	f(&u)
	u.UpdatedAt = s.now()
	s.users[clerkUserID] = u
	return u, nil
}

// Ping always succeeds: memory is there.
func (s *Store) Ping(context.Context) error { return nil }
