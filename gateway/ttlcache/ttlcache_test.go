package ttlcache_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/ttlcache"
)

func TestExpiry(t *testing.T) {
	now := time.Unix(1000, 0)
	c := ttlcache.New[string, int](10, func() time.Time { return now })
	c.Put("a", 1, now.Add(5*time.Second))
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get = %v, %v", v, ok)
	}
	now = now.Add(5*time.Second - time.Nanosecond)
	if _, ok := c.Get("a"); !ok {
		t.Error("expired early")
	}
	now = now.Add(time.Nanosecond)
	if _, ok := c.Get("a"); ok {
		t.Error("served at its expiry instant")
	}
	c.Put("b", 2, now.Add(time.Hour))
	c.Delete("b")
	if _, ok := c.Get("b"); ok {
		t.Error("served after Delete")
	}
	c.Put("c", 3, now.Add(time.Hour))
	c.Clear()
	if c.Len() != 0 {
		t.Error("entries after Clear")
	}
}

func TestBound(t *testing.T) {
	now := time.Unix(1000, 0)
	c := ttlcache.New[string, int](100, func() time.Time { return now })
	for i := range 1000 {
		c.Put(strconv.Itoa(i), i, now.Add(time.Hour))
		if c.Len() > 100 {
			t.Fatalf("%d entries after %d puts, bound is 100", c.Len(), i+1)
		}
	}
	// Expired entries go first: fill with expired, add one, all expired go.
	c.Clear()
	for i := range 100 {
		c.Put(strconv.Itoa(i), i, now.Add(time.Second))
	}
	now = now.Add(2 * time.Second)
	c.Put("fresh", 1, now.Add(time.Hour))
	if c.Len() != 1 {
		t.Errorf("%d entries, want only the fresh one", c.Len())
	}
	// Replacing an existing key at the bound evicts nothing.
	c = ttlcache.New[string, int](2, func() time.Time { return now })
	c.Put("a", 1, now.Add(time.Hour))
	c.Put("b", 2, now.Add(time.Hour))
	c.Put("a", 3, now.Add(time.Hour))
	if v, _ := c.Get("a"); v != 3 || c.Len() != 2 {
		t.Errorf("a = %d, len %d", v, c.Len())
	}
}
