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
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/ttlcache"
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
type Cache struct {
	next    Store
	ttl     time.Duration
	now     func() time.Time
	entries *ttlcache.Cache[string, gateway.User]
	group   singleflight.Group
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
	return &Cache{next: next, ttl: opts.TTL, now: opts.Now, entries: ttlcache.New[string, gateway.User](opts.Size, opts.Now)}
}

// UpsertUser returns the cached user when it is fresh and matches id's
// claims, else upserts through the store and caches the result. Errors are
// the store's and are never cached.
func (c *Cache) UpsertUser(ctx context.Context, id gateway.Identity) (gateway.User, error) {
	if u, ok := c.entries.Get(id.Subject); ok && u.Email == id.Email && u.Username == id.Username {
		return u, nil
	}
	// Length-prefixed so that no two identities share a key.
	key := strconv.Itoa(len(id.Subject)) + ":" + id.Subject + strconv.Itoa(len(id.Email)) + ":" + id.Email + id.Username
	v, err, _ := c.group.Do(key, func() (any, error) {
		// Detached from the first caller's cancellation: the others wait on
		// this call too. The store bounds it with its own timeout.
		u, err := c.next.UpsertUser(context.WithoutCancel(ctx), id)
		if err == nil {
			c.entries.Put(u.ClerkUserID, u, c.now().Add(c.ttl))
		}
		return u, err
	})
	return v.(gateway.User), err
}

// Forget drops a user, for changes made by this instance that must show at
// once (the other instances see them within TTL).
func (c *Cache) Forget(clerkUserID string) { c.entries.Delete(clerkUserID) }

// Len returns the number of cached users.
func (c *Cache) Len() int { return c.entries.Len() }
