// Package usercache keeps recently seen users in memory so that an
// authenticated request does not cost a database round trip.
//
// Staleness is bounded by TTL: a plan or status change made in the database
// (by `sas-gateway users`, by a Stripe webhook, on any instance) is seen by
// every instance within TTL, which must stay under the contract's 10 s.
// A token whose email or username differs from the cached row bypasses the
// cache, so profile changes reach the database on the next request.
package usercache

import (
	"context"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/signals-sorcery/sas/gateway"
)

// DefaultTTL is how long a user row is served from memory.
const DefaultTTL = 5 * time.Second

// DefaultSize bounds the number of cached users.
const DefaultSize = 100_000

// Store is the store the cache sits in front of.
type Store interface {
	UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error)
}

// Cache is a Store that answers from memory while an entry is fresh. It is
// safe for concurrent use. Concurrent misses for one identity share a
// single store call.
//
// It is hand-written rather than hashicorp/golang-lru's expirable LRU: that
// one starts a goroutine that can never be stopped and reads the wall clock,
// while this one needs an injected clock to be tested without sleeping, and
// a bounded map with expiry is all it needs.
type Cache struct {
	next Store
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[string]entry
	group   singleflight.Group
}

type entry struct {
	user    gateway.User
	expires time.Time
}

// Options configure a Cache; zero values take the defaults.
type Options struct {
	TTL  time.Duration
	Size int
	Now  func() time.Time
}

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
	return &Cache{next: next, ttl: opts.TTL, size: opts.Size, now: opts.Now, entries: make(map[string]entry)}
}

// UpsertUser returns the cached user when it is fresh and matches id's
// claims, else upserts through the store and caches the result. Errors are
// the store's and are never cached.
func (c *Cache) UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[id.Subject]
	c.mu.Unlock()
	if ok && now.Before(e.expires) && e.user.Email == id.Email && e.user.Username == id.Username {
		return e.user, nil
	}
	// Length-prefixed so that no two identities share a key.
	key := strconv.Itoa(len(id.Subject)) + ":" + id.Subject + strconv.Itoa(len(id.Email)) + ":" + id.Email + id.Username
	v, err, _ := c.group.Do(key, func() (any, error) {
		// Detached from the first caller's cancellation: the others wait on
		// this call too. The store bounds it with its own timeout.
		u, err := c.next.UpsertUser(context.WithoutCancel(ctx), id)
		if err == nil {
			c.put(u)
		}
		return u, err
	})
	return v.(gateway.User), err
}

// Forget drops a user, for changes made by this instance that must show at
// once (the other instances see them within TTL).
func (c *Cache) Forget(clerkUserID string) {
	c.mu.Lock()
	delete(c.entries, clerkUserID)
	c.mu.Unlock()
}

func (c *Cache) put(u gateway.User) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		c.evict(now)
	}
	c.entries[u.ClerkUserID] = entry{user: u, expires: now.Add(c.ttl)}
}

// evict removes expired entries, and if none were, an arbitrary tenth of
// the rest (Go's map order is random, which makes this random eviction).
func (c *Cache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < c.size*9/10 {
			break
		}
		delete(c.entries, k)
	}
}

// Len returns the number of cached users.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
