package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Group is the consumer group every instance's Drainer reads in.
const Group = "ledger"

// Store keeps usage events.
type Store interface {
	// RecordUsage stores events, each once however often it is called
	// with them, and returns how many were new.
	RecordUsage(ctx context.Context, events []gateway.UsageEvent) (int, error)
	// PruneUsage deletes what is older than before, batch events a
	// statement.
	PruneUsage(ctx context.Context, before time.Time, batch int) (int64, error)
}

// Defaults of Options.
const (
	DefaultBatch = 500
	// DefaultBlock is how long an idle read waits for new events. New
	// events end the wait at once, so it does not delay them; it sets the
	// idle cost (Upstash bills per command: one read per 5 s is about 17,000
	// commands a day per instance).
	DefaultBlock     = 5 * time.Second
	DefaultClaimIdle = 30 * time.Second
	// DefaultLinger is how long the drain lets events gather after a batch
	// smaller than Batch: under load, batches of hundreds instead of one
	// Postgres round trip every few events; idle, a delay nobody sees.
	DefaultLinger    = 200 * time.Millisecond
	DefaultRetention = 400 * 24 * time.Hour
	// DefaultFlushTimeout bounds the last drain when the instance stops.
	DefaultFlushTimeout = 5 * time.Second
)

// Options configure a Drainer.
type Options struct {
	Redis *redis.Client
	// Waiting is the client of the reads that wait for new events: one
	// connection of their own, closed when Run ends (closing a client closes
	// its connections, a read in progress included, so a stop does not wait
	// out a BLOCK). Default: a one-connection client with Redis's options,
	// made by New — so New must run before other goroutines use Redis.
	Waiting *redis.Client
	Stream  string // DefaultStream when empty
	Store   Store
	// Consumer names this instance in the group (default: host, pid and a
	// random suffix, so a restart is a new consumer that claims its
	// predecessor's pending events like any other instance).
	Consumer string
	Batch    int           // events per read and per insert (DefaultBatch)
	Block    time.Duration // how long a read waits for new events (DefaultBlock)
	// ClaimIdle is how long an event may stay read but unacknowledged by
	// its consumer before another takes it over (DefaultClaimIdle).
	ClaimIdle time.Duration
	// Linger is the pause after a batch smaller than Batch (DefaultLinger;
	// negative: none).
	Linger time.Duration
	// Retention is how long events are kept (DefaultRetention; negative:
	// forever). One instance an hour deletes what is older.
	Retention    time.Duration
	FlushTimeout time.Duration
	Metrics      *metrics.Metrics
	Logger       *slog.Logger
	Now          func() time.Time
}

// Drainer moves usage events from the stream into the Store.
type Drainer struct {
	o       Options
	grouped bool // the group is known to exist (Run's goroutine only)
	// sampled is when the backlog was last measured (Run's goroutine only).
	sampled time.Time
}

// New returns a Drainer; Run starts it.
func New(o Options) *Drainer {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Consumer == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		o.Consumer = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.Block <= 0 {
		o.Block = DefaultBlock
	}
	if o.ClaimIdle <= 0 {
		o.ClaimIdle = DefaultClaimIdle
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.FlushTimeout <= 0 {
		o.FlushTimeout = DefaultFlushTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Waiting == nil {
		opts := o.Redis.Options()
		w := *opts
		w.PoolSize, w.MinIdleConns, w.MaxIdleConns = 1, 0, 1
		o.Waiting = redis.NewClient(&w)
	}
	return &Drainer{o: o}
}

// Run drains until ctx is done, then flushes: it records what it holds and
// what is left in the stream, for up to FlushTimeout. Failures are logged,
// counted and retried with a backoff; Run returns only when ctx is done.
func (d *Drainer) Run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { _ = d.o.Waiting.Close() })
	defer stop()
	backoff := time.Duration(0)
	lastClaim, lastMaintenance := time.Time{}, time.Time{}
	pending := true // own pending entries first: a previous failure left some
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			if ctx.Err() != nil {
				break
			}
		}
		now := d.o.Now()
		if now.Sub(lastMaintenance) >= time.Hour {
			lastMaintenance = now
			d.maintain(ctx)
		}
		var n int
		var err error
		if now.Sub(lastClaim) >= d.o.ClaimIdle/2 {
			lastClaim = now
			n, err = d.claim(ctx)
		}
		if err == nil && n == 0 {
			n, err = d.read(ctx, pending, d.o.Block)
		}
		d.sample(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
		case err != nil:
			d.o.Metrics.UsageDrainError()
			d.o.Logger.Warn("usage ledger: drain failed; retrying (the events wait in Redis)", "err", err)
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			pending = true
		default:
			backoff = 0
			pending = pending && n > 0
			if n > 0 && n < d.o.Batch && d.o.Linger > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d.o.Linger):
				}
			}
		}
	}
	d.flush()
}

// flush records what this instance holds and what is left in the stream.
func (d *Drainer) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), d.o.FlushTimeout)
	defer cancel()
	for _, pending := range []bool{true, false} {
		for {
			n, err := d.read(ctx, pending, -1)
			if err != nil {
				d.o.Logger.Warn("usage ledger: flush on shutdown failed; another instance will drain the rest", "err", err)
				return
			}
			if n == 0 {
				break
			}
		}
	}
}

// read reads a batch — this consumer's pending entries, or new ones,
// waiting up to block (negative: not at all) — records it, and returns its
// size.
func (d *Drainer) read(ctx context.Context, pending bool, block time.Duration) (int, error) {
	if err := d.ensureGroup(ctx); err != nil {
		return 0, err
	}
	id := ">"
	if pending {
		id = "0"
	}
	args := &redis.XReadGroupArgs{Group: Group, Consumer: d.o.Consumer, Streams: []string{d.o.Stream, id}, Count: int64(d.o.Batch), Block: block}
	var streams []redis.XStream
	var err error
	if pending || block < 0 {
		args.Block = -1 // no BLOCK argument: answer at once
		streams, err = d.o.Redis.XReadGroup(ctx, args).Result()
	} else {
		streams, err = d.o.Waiting.XReadGroup(ctx, args).Result()
	}
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, d.lost(fmt.Errorf("read the usage stream: %w", err))
	}
	var msgs []redis.XMessage
	for _, s := range streams {
		msgs = append(msgs, s.Messages...)
	}
	return len(msgs), d.record(ctx, msgs)
}

// claim takes over entries other consumers read but did not acknowledge
// within ClaimIdle (their instance died, or lost Redis), and records them.
func (d *Drainer) claim(ctx context.Context) (int, error) {
	if err := d.ensureGroup(ctx); err != nil {
		return 0, err
	}
	msgs, _, err := d.o.Redis.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream: d.o.Stream, Group: Group, Consumer: d.o.Consumer, MinIdle: d.o.ClaimIdle, Start: "0-0", Count: int64(d.o.Batch),
	}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, d.lost(fmt.Errorf("claim idle usage events: %w", err))
	}
	if len(msgs) > 0 {
		d.o.Logger.Info("usage ledger: claimed events another instance left unrecorded", "events", len(msgs))
	}
	return len(msgs), d.record(ctx, msgs)
}

// record stores msgs, then acknowledges and deletes them: only after the
// commit, so a crash in between makes a redelivery, which the store's
// idempotent insert absorbs.
func (d *Drainer) record(ctx context.Context, msgs []redis.XMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	events := make([]gateway.UsageEvent, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	var oldest time.Time
	for _, m := range msgs {
		ids = append(ids, m.ID)
		e, err := decode(m.Values)
		if err != nil {
			// Acknowledged with the rest: a malformed entry would block the
			// stream forever.
			d.o.Logger.Error("usage ledger: dropping a malformed stream entry", "entry", m.ID, "err", err)
			continue
		}
		events = append(events, e)
		if oldest.IsZero() || e.At.Before(oldest) {
			oldest = e.At
		}
	}
	n, err := d.o.Store.RecordUsage(ctx, events)
	if err != nil && wire.ErrorCode(err) == wire.CodeInternal {
		// Postgres refused the batch itself (a value it will never take):
		// one event at a time, so that one bad event cannot block the
		// stream; those refused again are dropped and logged.
		n, err = d.oneByOne(ctx, events)
	}
	if err != nil {
		return fmt.Errorf("record %d usage events: %w", len(events), err)
	}
	if !oldest.IsZero() {
		d.o.Metrics.UsageRecorded(n, d.o.Now().Sub(oldest))
	}
	_, err = d.o.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, d.o.Stream, Group, ids...)
		p.XDel(ctx, d.o.Stream, ids...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("acknowledge usage events: %w", err)
	}
	return nil
}

// sample measures the backlog at most every 5 s, whether the drain works
// or not: during a Postgres outage it is the number that grows.
func (d *Drainer) sample(ctx context.Context) {
	if now := d.o.Now(); now.Sub(d.sampled) >= 5*time.Second {
		d.sampled = now
		if backlog, err := d.o.Redis.XLen(ctx, d.o.Stream).Result(); err == nil {
			d.o.Metrics.UsageBacklog(backlog)
		}
	}
}

// oneByOne records events singly, dropping (and logging) each that the
// store refuses for itself; it stops at the first outage.
func (d *Drainer) oneByOne(ctx context.Context, events []gateway.UsageEvent) (int, error) {
	n := 0
	for _, e := range events {
		k, err := d.o.Store.RecordUsage(ctx, []gateway.UsageEvent{e})
		switch {
		case err == nil:
			n += k
		case wire.ErrorCode(err) == wire.CodeInternal:
			d.o.Logger.Error("usage ledger: dropping an event the database refuses", "event", e.ID, "user", e.ClerkUserID, "err", err)
		default:
			return n, err
		}
	}
	return n, nil
}

// ensureGroup creates the stream and the group when they do not exist. The
// group starts at the beginning, so events written before the first
// instance ever drained are recorded too.
func (d *Drainer) ensureGroup(ctx context.Context) error {
	if d.grouped {
		return nil
	}
	err := d.o.Redis.XGroupCreateMkStream(ctx, d.o.Stream, Group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create the usage consumer group: %w", err)
	}
	d.grouped = true
	return nil
}

// lost notes an error that may mean the stream or group is gone (flushed
// Redis): the next read creates them again.
func (d *Drainer) lost(err error) error {
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		d.grouped = false
	}
	return err
}

// maintain runs hourly housekeeping on one instance at a time: the
// retention delete, and forgetting consumers (dead instances) that hold
// nothing and have been idle for a day.
func (d *Drainer) maintain(ctx context.Context) {
	ok, err := d.o.Redis.SetNX(ctx, d.o.Stream+":maintenance", d.o.Consumer, time.Hour).Result()
	if err != nil || !ok {
		return
	}
	if d.o.Retention > 0 {
		n, err := d.o.Store.PruneUsage(ctx, d.o.Now().Add(-d.o.Retention), 5000)
		if err != nil {
			d.o.Logger.Warn("usage ledger: retention delete failed; the next hour retries", "err", err)
		} else if n > 0 {
			d.o.Logger.Info("usage ledger: deleted events past retention", "events", n, "retention", d.o.Retention)
		}
	}
	consumers, err := d.o.Redis.XInfoConsumers(ctx, d.o.Stream, Group).Result()
	if err != nil {
		return
	}
	for _, c := range consumers {
		if c.Pending == 0 && c.Idle > 24*time.Hour && c.Name != d.o.Consumer {
			_ = d.o.Redis.XGroupDelConsumer(ctx, d.o.Stream, Group, c.Name).Err()
		}
	}
}
