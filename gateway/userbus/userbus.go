// Package userbus tells every gateway instance at once that a user's row
// changed (an account deleted, a plan changed by Stripe), through Redis
// pub/sub, so that each drops its cached copy instead of serving it until
// the cache's TTL — or, during a Postgres outage, for as long as stale rows
// are served. It is best effort: a message lost while Redis is unreachable
// leaves the TTL as the bound, as before.
//
// Each instance also publishes a heartbeat every HeartbeatEvery and
// listens for them: Listening reports whether heartbeats have been
// arriving, that is whether a change announced by any instance would reach
// this one. The user cache keeps users longer while it does.
package userbus

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultChannel is the Redis channel the instances share.
const DefaultChannel = "sas:users:changed"

// HeartbeatEvery is how often each instance publishes a heartbeat; one
// heard within ListeningWithin says the bus works.
const (
	HeartbeatEvery  = time.Second
	ListeningWithin = 3 * HeartbeatEvery
)

// heartbeat is the payload of a heartbeat: not a Clerk user id (those are
// "user_…").
const heartbeat = "\x00heartbeat"

// Bus publishes and receives user changes. Its methods are safe for
// concurrent use.
type Bus struct {
	rdb     *redis.Client
	channel string
	log     *slog.Logger
	// heard is when a heartbeat last arrived (Unix nanoseconds; 0: never
	// since the subscription was last established).
	heard atomic.Int64
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
		b.log.Warn("could not tell the other instances that a user changed; they see it when their cached copy ages out (minutes)", "user", clerkUserID, "err", err)
	}
}

// Run calls forget with the user id of every change published, by any
// instance, until ctx is done. go-redis resubscribes by itself after a
// lost connection; the changes published meanwhile are lost, so Run calls
// expire each time the subscription is (re)established, and every cached
// user is read again.
//
// It also publishes a heartbeat every HeartbeatEvery (see Listening).
func (b *Bus) Run(ctx context.Context, forget func(clerkUserID string), expire func()) {
	ps := b.rdb.Subscribe(ctx, b.channel)
	defer closeSoon(ps)
	ch := ps.ChannelWithSubscriptions()
	beat := time.NewTicker(HeartbeatEvery)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-beat.C:
			pctx, cancel := context.WithTimeout(ctx, HeartbeatEvery)
			_ = b.rdb.Publish(pctx, b.channel, heartbeat).Err() // a failure shows as heartbeats not heard
			cancel()
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch m := m.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					// Changes published before now may have been missed:
					// every cached user is read again, and the bus counts as
					// listening once a heartbeat comes through.
					b.heard.Store(0)
					expire()
				}
			case *redis.Message:
				if m.Payload == heartbeat {
					b.heard.Store(time.Now().UnixNano())
					continue
				}
				forget(m.Payload)
			}
		}
	}
}

// Listening reports whether a heartbeat arrived within ListeningWithin:
// the subscription works, and a change any instance announces reaches this
// one within moments.
func (b *Bus) Listening() bool {
	h := b.heard.Load()
	return h != 0 && time.Since(time.Unix(0, h)) < ListeningWithin
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
