package templates

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Store lists the current version of every template (postgres.DB).
type Store interface {
	CurrentTemplates(ctx context.Context) ([]Template, error)
}

// Cache holds the current version of every template in memory. Reload
// reads them all again (the bus calls it when an operator puts or rolls
// back a template, and Run every PollEvery as a backstop); when the store
// cannot be read, the templates last read stay in use (stale-if-error).
// It is safe for concurrent use.
type Cache struct {
	store Store
	log   *slog.Logger
	// reloading serialises reloads: a slow one that read before a put
	// committed must not overwrite a later one that read after it.
	reloading sync.Mutex
	mu        sync.RWMutex
	byKey     map[string]Template
	ok        bool // a load has succeeded
}

// Channel is the instances' Redis channel on which a put or a rollback is
// announced (userbus carries it): every instance reloads at once.
const Channel = "sas:templates:changed"

// PollEvery is how often Run reloads without being told to.
const PollEvery = 5 * time.Second

// NewCache returns a Cache of store; nothing is read until Reload or Run.
func NewCache(store Store, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cache{store: store, log: log, byKey: map[string]Template{}}
}

// Static returns a Cache of fixed templates (no store): `sas-gateway dev`
// without a database.
func Static(ts ...Template) *Cache {
	c := NewCache(nil, nil)
	c.set(ts)
	return c
}

func (c *Cache) set(ts []Template) {
	m := make(map[string]Template, len(ts))
	for _, t := range ts {
		m[t.Name] = t
	}
	c.mu.Lock()
	c.byKey, c.ok = m, true
	c.mu.Unlock()
}

// Reload reads every template's current version. On failure the cache
// keeps what it had.
func (c *Cache) Reload(ctx context.Context) error {
	if c.store == nil {
		return nil
	}
	c.reloading.Lock()
	defer c.reloading.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ts, err := c.store.CurrentTemplates(ctx)
	if err != nil {
		c.log.Warn("prompt templates could not be reloaded; the ones in memory stay in use", "err", err)
		return err
	}
	c.set(ts)
	return nil
}

// Run reloads every PollEvery until ctx is done (the first at once).
func (c *Cache) Run(ctx context.Context) {
	t := time.NewTicker(PollEvery)
	defer t.Stop()
	for {
		_ = c.Reload(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Get returns the current version of the named template. ok is false for
// an unknown name; loaded is false while no load has ever succeeded (the
// database has been unreachable since the start: unavailable, not
// not_found).
func (c *Cache) Get(name string) (t Template, ok, loaded bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	t, ok = c.byKey[name]
	return t, ok, c.ok
}

// All returns the current templates, by name; loaded is false while no
// load has ever succeeded.
func (c *Cache) All() (ts []Template, loaded bool) {
	c.mu.RLock()
	ts = make([]Template, 0, len(c.byKey))
	for _, t := range c.byKey {
		ts = append(ts, t)
	}
	loaded = c.ok
	c.mu.RUnlock()
	slices.SortFunc(ts, func(a, b Template) int { return strings.Compare(a.Name, b.Name) })
	return ts, loaded
}
