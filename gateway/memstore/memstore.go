// Package memstore is an in-memory user store with the semantics of the
// postgres store, for `sas-gateway dev` without a DATABASE_URL. Users live
// as long as the process.
package memstore

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
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
	// usage events by id, as the ledger's Postgres tables keep them
	usage map[string]gateway.UsageEvent
	// Clerk account events applied (by delivery id), and the newest
	// event's time per user
	accountEvents  map[string]struct{}
	accountEventAt map[string]time.Time
	announce       func(ctx context.Context, clerkUserID string)
}

// AnnounceTo makes f hear of every user the store changes, as the
// postgres store's does. Call it before the store is used.
func (s *Store) AnnounceTo(f func(ctx context.Context, clerkUserID string)) { s.announce = f }

// changed announces a change (outside the lock: f may do I/O).
func (s *Store) changed(ctx context.Context, clerkUserID string) {
	if s.announce != nil {
		s.announce(ctx, clerkUserID)
	}
}

// New returns an empty Store on clock now (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, users: map[string]gateway.User{}, usage: map[string]gateway.UsageEvent{},
		accountEvents: map[string]struct{}{}, accountEventAt: map[string]time.Time{}}
}

// UpsertUser creates the user or updates email and username when they
// changed.
func (s *Store) UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error) {
	u, changed := s.upsert(id)
	if changed { // a first sign-in is not announced, as in the postgres store
		s.changed(ctx, id.Subject)
	}
	return u, nil
}

func (s *Store) upsert(id gateway.Identity) (gateway.User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	u, ok := s.users[id.Subject]
	switch {
	case !ok:
		u = gateway.User{ClerkUserID: id.Subject, Email: id.Email, Username: id.Username,
			Plan: wire.PlanFree, Status: wire.StatusActive, CreatedAt: now, UpdatedAt: now}
		s.users[id.Subject] = u
		return u, false
	case id.Changes(u):
		u.Email, u.Username, u.UpdatedAt = cmp.Or(id.Email, u.Email), cmp.Or(id.Username, u.Username), now
	default:
		return u, false
	}
	s.users[id.Subject] = u
	return u, true
}

// SetPlan changes a plan. Errors: bad_request, not_found.
func (s *Store) SetPlan(ctx context.Context, clerkUserID, plan string) (gateway.User, error) {
	if !gateway.ValidPlan(plan) {
		return gateway.User{}, wire.Errorf(wire.CodeBadRequest, "plan must be %q or %q", wire.PlanFree, wire.PlanPro)
	}
	return s.update(ctx, clerkUserID, func(u *gateway.User) { u.Plan = plan })
}

// DeleteUser marks the user deleted and erases their email and username.
// Errors: not_found.
func (s *Store) DeleteUser(ctx context.Context, clerkUserID string) (gateway.User, error) {
	return s.update(ctx, clerkUserID, func(u *gateway.User) { u.Email, u.Username, u.Status = "", "", wire.StatusDeleted })
}

// ApplyAccountEvent applies a Clerk account event once per delivery id, as
// the postgres store does.
func (s *Store) ApplyAccountEvent(ctx context.Context, ev gateway.AccountEvent) (bool, error) {
	applied := s.applyAccountEvent(ev)
	if applied {
		s.changed(ctx, ev.ClerkUserID)
	}
	return applied, nil
}

// applyAccountEvent applies ev; false for a duplicate delivery.
func (s *Store) applyAccountEvent(ev gateway.AccountEvent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.accountEvents[ev.ID]; dup {
		return false
	}
	s.accountEvents[ev.ID] = struct{}{}
	now := s.now()
	u, known := s.users[ev.ClerkUserID]
	switch ev.Type {
	case gateway.AccountUpdated:
		if !known || u.Deleted() || ev.At.Before(s.accountEventAt[ev.ClerkUserID]) {
			return true
		}
		u.Email, u.Username, u.UpdatedAt = cmp.Or(ev.Email, u.Email), cmp.Or(ev.Username, u.Username), now
	case gateway.AccountDeleted:
		if !known {
			u = gateway.User{ClerkUserID: ev.ClerkUserID, Plan: wire.PlanFree, CreatedAt: now}
		}
		u.Email, u.Username, u.Status, u.UpdatedAt = "", "", wire.StatusDeleted, now
	default:
		return true
	}
	if ev.At.After(s.accountEventAt[ev.ClerkUserID]) {
		s.accountEventAt[ev.ClerkUserID] = ev.At
	}
	s.users[ev.ClerkUserID] = u
	return true
}

func (s *Store) update(ctx context.Context, clerkUserID string, f func(*gateway.User)) (gateway.User, error) {
	s.mu.Lock()
	u, ok := s.users[clerkUserID]
	if !ok {
		s.mu.Unlock()
		return u, wire.Errorf(wire.CodeNotFound, "no user with Clerk id %q", clerkUserID)
	}
	f(&u)
	u.UpdatedAt = s.now()
	s.users[clerkUserID] = u
	s.mu.Unlock()
	s.changed(ctx, clerkUserID)
	return u, nil
}

// Ping always succeeds: memory is there.
func (s *Store) Ping(context.Context) error { return nil }

// RecordUsage keeps events, each once, and returns how many were new.
func (s *Store) RecordUsage(_ context.Context, events []gateway.UsageEvent) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range events {
		if _, ok := s.usage[e.ID]; !ok {
			s.usage[e.ID] = e
			n++
		}
	}
	return n, nil
}

// UsageEvents are a user's usage events as recorded, oldest first: the
// rows of Postgres's usage_events, which an operator reads with SQL (see
// docs/operations.md).
func (s *Store) UsageEvents(clerkUserID string) []gateway.UsageEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gateway.UsageEvent
	for _, e := range s.usage {
		if e.ClerkUserID == clerkUserID {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b gateway.UsageEvent) int { return a.At.Compare(b.At) })
	return out
}

// PruneUsage deletes the events older than before.
func (s *Store) PruneUsage(_ context.Context, before time.Time, _ int) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for id, e := range s.usage {
		if e.At.Before(before) {
			delete(s.usage, id)
			n++
		}
	}
	return n, nil
}

// Usage sums a user's events per UTC day and model, from day from to day
// to inclusive, as the postgres store does.
func (s *Store) Usage(_ context.Context, clerkUserID string, from, to time.Time) ([]gateway.DayUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type key struct {
		day   time.Time
		model string
	}
	sums := map[key]gateway.UsageFigures{}
	first, last := dayOf(from), dayOf(to)
	for _, e := range s.usage {
		k := key{dayOf(e.At), e.Model}
		if e.ClerkUserID != clerkUserID || k.day.Before(first) || k.day.After(last) {
			continue
		}
		f := sums[k]
		f.Add(gateway.UsageFigures{Requests: 1, InputTokens: e.InputTokens, CachedInputTokens: e.CachedInputTokens, OutputTokens: e.OutputTokens, CostMicros: e.CostMicros})
		sums[k] = f
	}
	keys := slices.SortedFunc(maps.Keys(sums), func(a, b key) int {
		return cmp.Or(a.day.Compare(b.day), strings.Compare(a.model, b.model))
	})
	var days []gateway.DayUsage
	for _, k := range keys {
		if len(days) == 0 || !days[len(days)-1].Date.Equal(k.day) {
			days = append(days, gateway.DayUsage{Date: k.day})
		}
		days[len(days)-1].Models = append(days[len(days)-1].Models, gateway.ModelUsage{Model: k.model, UsageFigures: sums[k]})
	}
	return days, nil
}

func dayOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
