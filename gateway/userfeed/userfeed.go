// Package userfeed tells the user cache which users changed in Postgres,
// whoever changed them: a trigger stamps every inserted or really updated
// row with its transaction's id (the gateway's writes, `sas-gateway users`,
// one typed into the database's console), and every PollEvery each
// instance asks for the rows stamped at or after the oldest transaction
// still running at its previous poll, and forgets those users.
//
// The userbus announces the gateway's own changes at once, but it is best
// effort (a publish that fails is lost). The feed is the guarantee: while
// its polls succeed, a change reaches every instance within about a second,
// so the cache can keep users for minutes instead of seconds and an
// authenticated request is not a database round trip (issue 23). When the
// polls fail, Seen stops moving and the cache falls back to its short TTL.
package userfeed

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/signals-sorcery/sas/gateway"
)

// Store is the query the feed polls (postgres.DB): the users changed by
// transactions at or after since (at most limit+1), and the next since.
type Store interface {
	ChangedUsers(ctx context.Context, since string, limit int) (changes []gateway.UserChange, next string, err error)
}

// Defaults.
const (
	// PollEvery is how often the database is asked.
	PollEvery = time.Second
	// Limit is the most users one poll lists; past it (a bulk update, a
	// transaction left open that holds every later change in the window)
	// the cache forgets everyone instead.
	Limit = 1000
)

// Feed polls a Store. Its methods are safe for concurrent use.
type Feed struct {
	store Store
	log   *slog.Logger
	every time.Duration
	now   func() time.Time
	// seen is when (this instance's clock) the last successful poll
	// started; nil until one has.
	seen atomic.Pointer[time.Time]
}

// Options configure a Feed; zero values take the defaults.
type Options struct {
	Every  time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// New returns a Feed on store.
func New(store Store, o Options) *Feed {
	if o.Every <= 0 {
		o.Every = PollEvery
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Feed{store: store, log: o.Logger, every: o.Every, now: o.Now}
}

// Run polls until ctx is done, calling forget with every user changed —
// once per change, though a transaction held open makes the polls list it
// again — or expire when too many changed to list.
func (f *Feed) Run(ctx context.Context, forget func(clerkUserID string), expire func()) {
	t := time.NewTicker(f.every)
	defer t.Stop()
	since := "" // the database's; "": start from now
	failing := false
	// The changes the last poll listed, by user: a poll lists every change
	// still in its window, so a change not listed again has left it.
	var reported map[string]string
	for {
		start := f.now()
		changes, next, err := f.store.ChangedUsers(ctx, since, Limit)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				f.log.Warn("user change feed: polling the database failed; cached users are kept seconds, not minutes, until it works", "err", err)
			}
			failing = true
		case len(changes) > Limit:
			expire()
			since, failing, reported = next, false, nil
			f.seen.Store(&start)
		default:
			listed := make(map[string]string, len(changes))
			for _, c := range changes {
				if reported[c.ClerkUserID] != c.Stamp {
					forget(c.ClerkUserID)
				}
				listed[c.ClerkUserID] = c.Stamp
			}
			since, failing, reported = next, false, listed
			f.seen.Store(&start)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Seen returns a time before which every change to a user has been passed
// to forget (zero: none yet).
func (f *Feed) Seen() time.Time {
	if t := f.seen.Load(); t != nil {
		return *t
	}
	return time.Time{}
}
