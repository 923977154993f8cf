package usercache_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/usercache"
	"github.com/signals-sorcery/sas/shared/wire"
)

// store is a fake Store: a function field and a call counter.
type store struct {
	calls  atomic.Int64
	upsert func(gateway.Identity) (gateway.User, error)
}

var _ usercache.Store = (*store)(nil)

func (s *store) UpsertUser(_ context.Context, id gateway.Identity) (gateway.User, error) {
	s.calls.Add(1)
	return s.upsert(id)
}

func echo(plan string) func(gateway.Identity) (gateway.User, error) {
	return func(id gateway.Identity) (gateway.User, error) {
		return gateway.User{ClerkUserID: id.Subject, Email: id.Email, Username: id.Username, Plan: plan, Status: "active"}, nil
	}
}

func TestCacheServesWithinTTLAndRefetchesAfter(t *testing.T) {
	clk := &testenv.Clock{}
	s := &store{upsert: echo("free")}
	c := usercache.New(s, usercache.Options{TTL: 5 * time.Second, Now: clk.Now})
	ctx := context.Background()
	id := gateway.Identity{Subject: "user_1", Email: "a@b.c", Username: "A"}
	for range 3 {
		if _, err := c.UpsertUser(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("store calls = %d within TTL, want 1", n)
	}
	// The plan changes in the database; within the TTL we may serve the old
	// row, after it we must not.
	s.upsert = echo("pro")
	clk.Advance(4 * time.Second)
	if u, _ := c.UpsertUser(ctx, id); u.Plan != "free" {
		t.Errorf("plan = %q inside TTL, want the cached free", u.Plan)
	}
	clk.Advance(time.Second)
	if u, _ := c.UpsertUser(ctx, id); u.Plan != "pro" {
		t.Errorf("plan = %q after TTL, want pro", u.Plan)
	}
}

// TestWatchedKeepsUsersLonger: while the change feed is current, a user
// is served from memory for WatchedTTL (changes come through Forget); the
// moment it is not, the short TTL bounds staleness again; past WatchedTTL
// the store is read whatever the feed says; Forget and Expire still act at
// once; stale-if-error counts from the feed's last poll, not the read.
func TestWatchedKeepsUsersLonger(t *testing.T) {
	clk := &testenv.Clock{}
	s := &store{upsert: echo("free")}
	var seen atomic.Pointer[time.Time]
	current := func() { now := clk.Now(); seen.Store(&now) }
	changesSeen := func() time.Time {
		if p := seen.Load(); p != nil {
			return *p
		}
		return time.Time{}
	}
	c := usercache.New(s, usercache.Options{TTL: 5 * time.Second, WatchedTTL: time.Minute, StaleIfError: 2 * time.Minute,
		ChangesSeen: changesSeen, Now: clk.Now})
	ctx := context.Background()
	id := gateway.Identity{Subject: "user_1", Email: "a@b.c", Username: "A"}
	get := func() (string, error) {
		t.Helper()
		u, err := c.UpsertUser(ctx, id)
		return u.Plan, err
	}
	if p, _ := get(); p != "free" {
		t.Fatal(p)
	}
	s.upsert = echo("pro") // a change the feed has not reported
	clk.Advance(30 * time.Second)
	current()
	if p, _ := get(); p != "free" || s.calls.Load() != 1 {
		t.Errorf("30 s, feed current: plan %q after %d reads, want the cached free and 1 read", p, s.calls.Load())
	}
	clk.Advance(usercache.SeenWithin)
	if p, _ := get(); p != "pro" {
		t.Errorf("feed silent for %v: plan %q, want pro (past the short TTL)", usercache.SeenWithin, p)
	}
	clk.Advance(61 * time.Second)
	current()
	s.upsert = echo("free")
	if p, _ := get(); p != "free" {
		t.Errorf("61 s after the read, feed current: plan %q, want a read (past WatchedTTL)", p)
	}
	s.upsert = echo("pro")
	c.Forget("user_1")
	if p, _ := get(); p != "pro" {
		t.Errorf("after Forget: plan %q, want pro", p)
	}
	s.upsert = echo("free")
	c.Expire()
	if p, _ := get(); p != "free" {
		t.Errorf("after Expire: plan %q, want free", p)
	}
	// The database goes down 50 s after the last read, the feed having
	// confirmed the row until then: stale for 2 minutes from the feed's
	// last poll, not from the read.
	clk.Advance(50 * time.Second)
	current()
	s.upsert = func(gateway.Identity) (gateway.User, error) {
		return gateway.User{}, wire.Wrap(wire.CodeUnavailable, "down", errors.New("down"))
	}
	clk.Advance(100 * time.Second) // 150 s after the read, 100 s after the feed's poll
	if p, err := get(); err != nil || p != "free" {
		t.Errorf("Postgres down, 100 s after the feed's last poll: %q, %v; want the stale free", p, err)
	}
	clk.Advance(21 * time.Second)
	if _, err := get(); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("121 s after the feed's last poll: %v, want unavailable", err)
	}
	// After an Expire the feed no longer vouches for the copy (it may have
	// missed its change): stale for 2 minutes from the read only, however
	// current the feed is (found in review).
	s.upsert = echo("free")
	c.Forget("user_1")
	if p, _ := get(); p != "free" {
		t.Fatal(p)
	}
	c.Expire()
	s.upsert = func(gateway.Identity) (gateway.User, error) {
		return gateway.User{}, wire.Wrap(wire.CodeUnavailable, "down", errors.New("down"))
	}
	clk.Advance(100 * time.Second)
	current()
	clk.Advance(21 * time.Second) // 121 s after the read, 21 s after the feed's poll
	if p, err := get(); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("expired, 121 s after the read: %q, %v; want unavailable", p, err)
	}
}

// TestForgetBetweenCheckAndPut (found in review): a Forget that lands
// after a read has checked for Forgets and before it caches its row
// leaves the row uncached (it may predate the change).
func TestForgetBetweenCheckAndPut(t *testing.T) {
	clk := &testenv.Clock{}
	s := &store{upsert: echo("free")}
	var c *usercache.Cache
	var calls atomic.Int64
	now := func() time.Time {
		// A miss reads the clock three times: the entries' lookup, the
		// Forget check, then the time it stamps on the row it caches —
		// after the check, before the Put: Forget there.
		if calls.Add(1) == 3 {
			c.Forget("user_1")
		}
		return clk.Now()
	}
	c = usercache.New(s, usercache.Options{TTL: 5 * time.Second, Now: now})
	ctx := context.Background()
	id := gateway.Identity{Subject: "user_1"}
	if _, err := c.UpsertUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 3 {
		t.Fatalf("the clock was read %d times: the test no longer reaches between the check and the Put", calls.Load())
	}
	s.upsert = echo("pro")
	if u, _ := c.UpsertUser(ctx, id); u.Plan != "pro" {
		t.Errorf("plan %q: the row read across the Forget was cached", u.Plan)
	}
}

func TestCacheBypassedWhenClaimsChange(t *testing.T) {
	s := &store{upsert: echo("free")}
	c := usercache.New(s, usercache.Options{})
	ctx := context.Background()
	_, _ = c.UpsertUser(ctx, gateway.Identity{Subject: "user_1", Email: "old@b.c"})
	u, _ := c.UpsertUser(ctx, gateway.Identity{Subject: "user_1", Email: "new@b.c"})
	if u.Email != "new@b.c" || s.calls.Load() != 2 {
		t.Errorf("email = %q after %d calls, want new@b.c after 2", u.Email, s.calls.Load())
	}
}

func TestCacheSharesConcurrentMisses(t *testing.T) {
	// In a synctest bubble, synctest.Wait returns only once every goroutine
	// is durably blocked: one inside the store, the rest waiting on its
	// result. No sleep decides whether they have "arrived".
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		s := &store{}
		s.upsert = func(id gateway.Identity) (gateway.User, error) {
			<-release
			return echo("free")(id)
		}
		c := usercache.New(s, usercache.Options{})
		id := gateway.Identity{Subject: "user_1"}
		var wg sync.WaitGroup
		for range 100 {
			wg.Go(func() {
				if _, err := c.UpsertUser(context.Background(), id); err != nil {
					t.Error(err)
				}
			})
		}
		synctest.Wait()
		close(release)
		wg.Wait()
		if n := s.calls.Load(); n != 1 {
			t.Errorf("store calls = %d for 100 concurrent misses, want 1", n)
		}
	})
}

func TestCacheDoesNotCacheErrors(t *testing.T) {
	boom := errors.New("db down")
	s := &store{upsert: func(gateway.Identity) (gateway.User, error) { return gateway.User{}, boom }}
	c := usercache.New(s, usercache.Options{})
	id := gateway.Identity{Subject: "user_1"}
	if _, err := c.UpsertUser(context.Background(), id); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	s.upsert = echo("free")
	if _, err := c.UpsertUser(context.Background(), id); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestCacheStaysBounded(t *testing.T) {
	s := &store{upsert: echo("free")}
	c := usercache.New(s, usercache.Options{Size: 100})
	ctx := context.Background()
	for i := range 1000 {
		_, _ = c.UpsertUser(ctx, gateway.Identity{Subject: time.Duration(i).String()})
	}
	if n := c.Len(); n > 100 {
		t.Errorf("cache holds %d entries, bound is 100", n)
	}
}

// TestStaleIfError: while the store is unavailable, a user read within
// StaleIfError is served from memory; older ones, unknown ones and other
// errors are not.
func TestStaleIfError(t *testing.T) {
	clk := &testenv.Clock{}
	s := &store{upsert: echo("pro")}
	var stale atomic.Int64
	var mu sync.Mutex
	var lookups []string
	c := usercache.New(s, usercache.Options{TTL: 5 * time.Second, StaleIfError: time.Minute, Now: clk.Now, OnStale: func(error) { stale.Add(1) },
		OnLookup: func(r string) { mu.Lock(); lookups = append(lookups, r); mu.Unlock() }})
	ctx := context.Background()
	id := gateway.Identity{Subject: "user_1", Email: "a@b.c", Username: "A"}
	if _, err := c.UpsertUser(ctx, id); err != nil {
		t.Fatal(err)
	}
	down := wire.Wrap(wire.CodeUnavailable, "The database is unavailable.", errors.New("connection refused"))
	s.upsert = func(gateway.Identity) (gateway.User, error) { return gateway.User{}, down }
	clk.Advance(30 * time.Second)
	if u, err := c.UpsertUser(ctx, id); err != nil || u.Plan != "pro" || stale.Load() != 1 {
		t.Errorf("30 s after the read, store down: %+v, %v (stale served %d)", u, err, stale.Load())
	}
	if _, err := c.UpsertUser(ctx, gateway.Identity{Subject: "user_2"}); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("an unknown user while the store is down: %v", err)
	}
	clk.Advance(31 * time.Second)
	if _, err := c.UpsertUser(ctx, id); wire.ErrorCode(err) != wire.CodeUnavailable {
		t.Errorf("61 s after the read: %v, want unavailable (past StaleIfError)", err)
	}
	s.upsert = echo("free")
	if _, err := c.UpsertUser(ctx, id); err != nil { // fresh again
		t.Fatal(err)
	}
	s.upsert = func(gateway.Identity) (gateway.User, error) { return gateway.User{}, errors.New("a bug") }
	clk.Advance(6 * time.Second)
	if _, err := c.UpsertUser(ctx, id); err == nil {
		t.Error("an internal error was answered from the stale entry")
	}
	if _, err := c.UpsertUser(ctx, gateway.Identity{Subject: "user_1"}); err == nil {
		t.Error("an internal error was answered from the stale entry")
	}
	s.upsert = echo("free")
	_, _ = c.UpsertUser(ctx, id)
	_, _ = c.UpsertUser(ctx, id)
	// Each lookup reported once, with what answered it.
	want := []string{usercache.Miss, usercache.Stale, usercache.Miss, usercache.Miss, usercache.Miss, usercache.Miss, usercache.Miss, usercache.Miss, usercache.Hit}
	if !slices.Equal(lookups, want) {
		t.Errorf("lookups reported %v, want %v", lookups, want)
	}
}

// TestForgetOvertakesARead (found in review): a Forget while the store is
// being read — the row read may predate the change Forget announces — is
// not undone by caching that row; the next call reads the store again.
func TestForgetOvertakesARead(t *testing.T) {
	read, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	s := &store{upsert: func(id gateway.Identity) (gateway.User, error) {
		if first.CompareAndSwap(false, true) {
			close(read)
			<-release
			return gateway.User{ClerkUserID: id.Subject, Plan: "free", Status: "active"}, nil
		}
		return gateway.User{ClerkUserID: id.Subject, Plan: "free", Status: "deleted"}, nil
	}}
	c := usercache.New(s, usercache.Options{TTL: time.Hour})
	done := make(chan gateway.User)
	go func() {
		u, _ := c.UpsertUser(context.Background(), gateway.Identity{Subject: "user_1"})
		done <- u
	}()
	<-read
	c.Forget("user_1") // the deletion, announced while the old row is in flight
	close(release)
	if u := <-done; u.Status != "active" {
		t.Fatalf("the in-flight read: %+v", u)
	}
	if u, _ := c.UpsertUser(context.Background(), gateway.Identity{Subject: "user_1"}); u.Status != "deleted" || s.calls.Load() != 2 {
		t.Errorf("after the Forget: %+v after %d store calls; want the deleted row from a second read", u, s.calls.Load())
	}
}

// TestExpireKeepsStaleCopies: Expire (the userbus resubscribed and may
// have missed changes) makes the next request read the store, but keeps
// the copies for stale-if-error — found when clearing instead made a
// Postgres outage right after a start refuse known users.
func TestExpireKeepsStaleCopies(t *testing.T) {
	clk := &testenv.Clock{}
	var down atomic.Bool
	s := &store{upsert: func(id gateway.Identity) (gateway.User, error) {
		if down.Load() {
			return gateway.User{}, wire.Errorf(wire.CodeUnavailable, "down")
		}
		return gateway.User{ClerkUserID: id.Subject, Plan: "free", Status: "active"}, nil
	}}
	c := usercache.New(s, usercache.Options{TTL: time.Hour, Now: clk.Now})
	id := gateway.Identity{Subject: "user_1"}
	if _, err := c.UpsertUser(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	c.Expire()
	if _, err := c.UpsertUser(context.Background(), id); err != nil || s.calls.Load() != 2 {
		t.Fatalf("after Expire: %v, %d store calls; want a second read", err, s.calls.Load())
	}
	c.Expire()
	down.Store(true)
	if u, err := c.UpsertUser(context.Background(), id); err != nil || u.Status != "active" {
		t.Errorf("the store down after Expire: %+v, %v; want the stale copy", u, err)
	}
}

// TestExpireDuringARead: a read in flight when Expire runs (the bus
// subscribing at start, while the first request reads its user) is still
// cached for stale-if-error, though not fresh — found when a Postgres
// outage right after a start refused a user read just before it.
func TestExpireDuringARead(t *testing.T) {
	read, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int64
	s := &store{upsert: func(id gateway.Identity) (gateway.User, error) {
		switch calls.Add(1) {
		case 1:
			close(read)
			<-release
			return gateway.User{ClerkUserID: id.Subject, Plan: "free", Status: "active"}, nil
		default:
			return gateway.User{}, wire.Errorf(wire.CodeUnavailable, "down")
		}
	}}
	c := usercache.New(s, usercache.Options{TTL: time.Hour})
	done := make(chan error)
	go func() {
		_, err := c.UpsertUser(context.Background(), gateway.Identity{Subject: "user_1"})
		done <- err
	}()
	<-read
	c.Expire()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if u, err := c.UpsertUser(context.Background(), gateway.Identity{Subject: "user_1"}); err != nil || u.Status != "active" || calls.Load() != 2 {
		t.Errorf("with the store down: %+v, %v after %d store calls; want a fresh read tried, then the stale copy", u, err, calls.Load())
	}
}

// TestOtherUsersForgetsDoNotStopCaching: the userbus makes every instance
// Forget every changed user; a Forget of someone else during a read must
// not keep this user out of the cache — found when a gateway busy with
// other users' changes had no stale copy to serve through a Postgres outage.
func TestOtherUsersForgetsDoNotStopCaching(t *testing.T) {
	read, release := make(chan struct{}), make(chan struct{})
	s := &store{upsert: func(id gateway.Identity) (gateway.User, error) {
		if id.Subject == "user_1" {
			close(read)
			<-release
		}
		return gateway.User{ClerkUserID: id.Subject, Plan: "free", Status: "active"}, nil
	}}
	c := usercache.New(s, usercache.Options{TTL: time.Hour})
	done := make(chan error)
	go func() {
		_, err := c.UpsertUser(context.Background(), gateway.Identity{Subject: "user_1"})
		done <- err
	}()
	<-read
	c.Forget("user_2")
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpsertUser(context.Background(), gateway.Identity{Subject: "user_1"}); err != nil || s.calls.Load() != 1 {
		t.Errorf("user_1 was not cached (%d store calls, %v)", s.calls.Load(), err)
	}
}
