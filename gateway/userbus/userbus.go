// Package userbus tells every gateway instance at once that a user's row
// changed (an account deleted, a plan changed by Stripe), through Redis
// pub/sub, so that each drops its cached copy instead of serving it until
// the cache's TTL — or, during a Postgres outage, for as long as stale rows
// are served. It is best effort: a message lost while Redis is unreachable
// leaves the TTL as the bound, as before.
package userbus

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultChannel is the Redis channel the instances share.
const DefaultChannel = "sas:users:changed"

// Bus publishes and receives user changes. Its methods are safe for
// concurrent use.
type Bus struct {
	rdb     *redis.Client
	channel string
	log     *slog.Logger
}

// New returns a Bus on channel (DefaultChannel when empty).
func New(rdb *redis.Client, channel string, log *slog.Logger) *Bus {
	if channel == "" {
		channel = DefaultChannel
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{rdb: rdb, channel: channel, log: log}
}

// Changed tells every instance that the user's row changed. A failure is
// logged, not returned: the caller's change is made, and the other
// instances still see it within their cache's TTL.
func (b *Bus) Changed(ctx context.Context, clerkUserID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := b.rdb.Publish(ctx, b.channel, clerkUserID).Err(); err != nil {
		b.log.Warn("could not announce a change to the other instances; they see it at their next poll", "channel", b.channel, "id", clerkUserID, "err", err)
	}
}

// Run calls forget with the user id of every change published, by any
// instance, until ctx is done. go-redis resubscribes by itself after a
// lost connection; the changes published meanwhile are lost, so Run calls
// expire each time the subscription is (re)established, and every cached
// user is read again.
func (b *Bus) Run(ctx context.Context, forget func(clerkUserID string), expire func()) {
	ps := b.rdb.Subscribe(ctx, b.channel)
	defer closeSoon(ps)
	ch := ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					expire()
				}
			case *redis.Message:
				forget(m.Payload)
			}
		}
	}
}

// closeSoon closes ps, waiting at most a second: while go-redis is
// reconnecting to a Redis that does not answer, Close waits for the
// reconnection, and a shutdown should not.
func closeSoon(ps *redis.PubSub) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ps.Close()
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}
