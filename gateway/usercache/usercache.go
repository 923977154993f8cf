// Package usercache keeps recently seen users in memory so that an
// authenticated request does not cost a database round trip.
//
// Staleness is bounded by TTL: a plan or status change made in the database
// (by `sas-gateway users`, by a Stripe webhook, on any instance) is seen by
// every instance within TTL, which must stay under the contract's 10 s.
// The changes the gateway makes itself are also announced on the userbus,
// which makes every instance Forget the user at once. The userfeed polls
// the database for every changed user, whoever changed it, and Forgets
// them too: while its polls succeed (Options.ChangesSeen is recent), a
// user is kept for WatchedTTL instead of TTL, so a user who sends a
// request every few minutes is not a database round trip on each one
// (issue 23: that round trip was most of what the gateway added to a first
// byte). When the polls stop, TTL applies again within SeenWithin.
// A token whose email or username differs from the cached row bypasses the
// cache, so profile changes reach the database on the next request (a
// token without them matches: a missing claim changes nothing).
//
// Stale if error: when the database cannot be reached, a user seen within
// StaleIfError (default 10 minutes) is served from memory instead of a 503.
// Enforcement lives in Redis, so known users keep working through a
// Postgres outage; a plan or status change cannot be made during one
// anyway (both live in Postgres), and is seen within TTL of its return.
package usercache

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/ttlcache"
	"github.com/signals-sorcery/sas/shared/wire"
)

// DefaultTTL is how long a user row is served from memory.
const DefaultTTL = 5 * time.Second

// DefaultSize bounds the number of cached users.
const DefaultSize = 100_000

// DefaultStaleIfError is how long after it was read a user may be served
// while the database is unreachable.
const DefaultStaleIfError = 10 * time.Minute

// DefaultWatchedTTL is how long a user row is served from memory while the
// change feed works.
const DefaultWatchedTTL = 5 * time.Minute

// SeenWithin is how recent ChangesSeen must be for WatchedTTL to apply.
const SeenWithin = 3 * time.Second

// Store is the store the cache sits in front of.
type Store interface {
	UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error)
}

// Cache is a Store that answers from memory while an entry is fresh. It is
// safe for concurrent use. Concurrent misses for one identity share a
// single store call.
type Cache struct {
	next Store
	ttl  time.Duration
	// watchedTTL replaces ttl while seen is recent.
	watchedTTL time.Duration
	seen       func() time.Time
	stale      time.Duration
	onStale    func(err error)
	onLookup   func(result string)
	now        func() time.Time
	entries    *ttlcache.Cache[string, entry]
	group      singleflight.Group
	// seq numbers Forget calls, and forgotten holds each user's last one
	// for a minute (longer than any store read): a read of a user that a
	// Forget of that user overtook is returned but not cached (it may
	// predate the change). Per user, so that the changes of other users —
	// every instance's, through the userbus — do not stop caching.
	seq       atomic.Uint64
	forgotten *ttlcache.Cache[string, uint64]
	// epoch counts Expire calls: an entry read in an earlier epoch is not
	// fresh, though still good for stale-if-error (so a read in flight
	// during an Expire is cached, in its own epoch).
	epoch atomic.Uint64
}

type entry struct {
	user   gateway.User
	epoch  uint64
	readAt time.Time
}

// Options configure a Cache; zero values take the defaults.
type Options struct {
	TTL  time.Duration
	Size int
	// StaleIfError bounds the age of a user served while the store
	// answers unavailable (DefaultStaleIfError; negative: never).
	StaleIfError time.Duration
	// OnStale is called with the store's error each time a stale user is
	// served (metrics, logs).
	OnStale func(err error)
	// OnLookup is called with the result of each lookup: Hit, Miss or
	// Stale (metrics).
	OnLookup func(result string)
	// ChangesSeen returns a time before which every change to a user has
	// reached Forget (the userfeed's last poll); while it is within
	// SeenWithin, entries are fresh for WatchedTTL (DefaultWatchedTTL)
	// instead of TTL, and stale-if-error counts from it. Nil: never.
	ChangesSeen func() time.Time
	WatchedTTL  time.Duration
	Now         func() time.Time
}

// The results of a lookup, for Options.OnLookup.
const (
	Hit   = "hit"   // served from memory
	Miss  = "miss"  // read from the store (whatever it answered)
	Stale = "stale" // served from memory: the store was unavailable
)

// New returns a Cache in front of next.
func New(next Store, opts Options) *Cache {
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Size <= 0 {
		opts.Size = DefaultSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StaleIfError == 0 {
		opts.StaleIfError = DefaultStaleIfError
	}
	if opts.OnStale == nil {
		opts.OnStale = func(error) {}
	}
	if opts.OnLookup == nil {
		opts.OnLookup = func(string) {}
	}
	if opts.ChangesSeen == nil {
		opts.ChangesSeen = func() time.Time { return time.Time{} }
	}
	if opts.WatchedTTL <= 0 {
		opts.WatchedTTL = DefaultWatchedTTL
	}
	// Entries stay in memory as long as either bound may serve them.
	keep := max(opts.TTL, opts.WatchedTTL)
	return &Cache{next: next, ttl: opts.TTL, watchedTTL: keep, seen: opts.ChangesSeen, stale: opts.StaleIfError,
		onStale: opts.OnStale, onLookup: opts.OnLookup, now: opts.Now,
		entries: ttlcache.New[string, entry](opts.Size, opts.Now), forgotten: ttlcache.New[string, uint64](opts.Size, opts.Now)}
}

// UpsertUser returns the cached user when it is fresh and matches id's
// claims, else upserts through the store and caches the result. When the
// store is unavailable, a user read within StaleIfError is returned
// instead. Errors are the store's and are never cached.
func (c *Cache) UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error) {
	if e, ok := c.entries.Get(id.Subject); ok && e.epoch == c.epoch.Load() && !id.Changes(e.user) && c.fresh(e) {
		c.onLookup(Hit)
		return e.user, nil
	}
	// Length-prefixed so that no two identities share a key.
	key := strconv.Itoa(len(id.Subject)) + ":" + id.Subject + strconv.Itoa(len(id.Email)) + ":" + id.Email + id.Username
	v, err, _ := c.group.Do(key, func() (any, error) {
		// Detached from the first caller's cancellation: the others wait on
		// this call too. The store bounds it with its own timeout.
		before, epoch := c.seq.Load(), c.epoch.Load()
		u, err := c.next.UpsertUser(context.WithoutCancel(ctx), id)
		if last, forgot := c.forgotten.Get(id.Subject); err == nil && (!forgot || last <= before) {
			now := c.now()
			c.entries.Put(u.ClerkUserID, entry{u, epoch, now}, now.Add(c.watchedTTL))
			if last, forgot := c.forgotten.Get(id.Subject); forgot && last > before {
				// A Forget landed between the check and the Put: the row
				// may predate its change.
				c.entries.Delete(u.ClerkUserID)
			}
		}
		return u, err
	})
	if err != nil && wire.ErrorCode(err) == wire.CodeUnavailable {
		// Stale for StaleIfError from when the row was last known current:
		// read, or confirmed unchanged by the change feed — not after an
		// Expire, which says the feed may have missed its change.
		if e, _, ok := c.entries.GetStale(id.Subject); ok && c.now().Before(c.knownAt(e).Add(c.stale)) {
			c.onStale(err)
			c.onLookup(Stale)
			return e.user, nil
		}
	}
	c.onLookup(Miss)
	return v.(gateway.User), err
}

// fresh reports whether e may be served without reading the store: read
// within TTL, or within WatchedTTL while the change feed is current.
func (c *Cache) fresh(e entry) bool {
	now := c.now()
	age := now.Sub(e.readAt)
	if age < c.ttl {
		return true
	}
	seen := c.seen()
	since := now.Sub(seen)
	return age < c.watchedTTL && !seen.IsZero() && since < SeenWithin && since > -SeenWithin
}

// knownAt is when e was last known current: read, or — unless the cache
// was expired since — vouched for by the change feed.
func (c *Cache) knownAt(e entry) time.Time {
	if seen := c.seen(); e.epoch == c.epoch.Load() && seen.After(e.readAt) {
		return seen
	}
	return e.readAt
}

// Forget drops a user, for changes that must show at once (made here, or
// announced on the userbus). A read of the store in flight when it is
// called is not cached.
func (c *Cache) Forget(clerkUserID string) {
	c.forgotten.Put(clerkUserID, c.seq.Add(1), c.now().Add(time.Minute))
	c.entries.Delete(clerkUserID)
}

// Expire makes every user be read from the store again on their next
// request (the userbus may have missed changes while reconnecting). The
// copies stay for stale-if-error: a Postgres outage still serves them.
func (c *Cache) Expire() { c.epoch.Add(1) }

// Len returns the number of cached users.
func (c *Cache) Len() int { return c.entries.Len() }
