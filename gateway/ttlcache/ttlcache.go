// Package ttlcache is a bounded in-memory map whose entries expire, on an
// injected clock. The gateway uses it for verified tokens (auth) and for
// user rows (usercache).
//
// It is hand-written rather than hashicorp/golang-lru's expirable LRU: that
// one starts a goroutine that can never be stopped and reads the wall clock,
// while these caches must be testable without sleeping. Eviction at the
// bound is random (Go's map order), which for these workloads — hot keys
// are re-added within seconds — costs nothing measurable against an LRU's
// bookkeeping on every hit.
package ttlcache

import (
	"sync"
	"time"
)

// Cache maps K to V until each entry's expiry. It is safe for concurrent use.
type Cache[K comparable, V any] struct {
	size int
	now  func() time.Time

	mu sync.Mutex
	m  map[K]entry[V]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New returns a cache of at most size entries (size > 0) on clock now
// (time.Now when nil).
func New[K comparable, V any](size int, now func() time.Time) *Cache[K, V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[K, V]{size: max(size, 1), now: now, m: make(map[K]entry[V])}
}

// Get returns the value of k if it has not expired.
func (c *Cache[K, V]) Get(k K) (V, bool) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// GetStale returns the value of k and its expiry, expired or not, while the
// entry is still held (an expired entry stays until evicted at the size
// bound or replaced): for serving a stale value when the source is down.
func (c *Cache[K, V]) GetStale(k K) (V, time.Time, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	return e.v, e.expires, ok
}

// Put stores v under k until expires. At the size bound it first drops the
// expired entries, then, if none were, a random tenth of the rest.
func (c *Cache[K, V]) Put(k K, v V, expires time.Time) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.size {
		c.evict(now)
	}
	c.m[k] = entry[V]{v: v, expires: expires}
}

func (c *Cache[K, V]) evict(now time.Time) {
	for k, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, k)
		}
	}
	target := c.size - max(c.size/10, 1)
	for k := range c.m {
		if len(c.m) <= target {
			break
		}
		delete(c.m, k)
	}
}

// Delete removes k.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// Clear removes every entry.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// Len returns the number of entries, expired ones included.
func (c *Cache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
