// Package redisclient builds the gateway's Redis clients: one set of
// timeouts and retries for every use (limits, ledger, bus), and go-redis's
// own messages sent to slog.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// New returns a client for a redis:// or rediss:// URL with timeouts
// short enough that a dead Redis answers 503 quickly instead of hanging.
func New(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		// The parser's error may quote the URL with its password.
		return nil, errors.New("redis: REDIS_URL is not a valid redis:// or rediss:// URL")
	}
	opts.DialTimeout = 2 * time.Second
	// go-redis retries a failed dial 5 times by default; a Redis that
	// refuses connections should turn into a fast 503, not a 1 s stall.
	opts.DialerRetries = 2
	opts.DialerRetryTimeout = 50 * time.Millisecond
	opts.MaxRetries = 1
	opts.ReadTimeout = time.Second
	opts.WriteTimeout = time.Second
	opts.PoolTimeout = 2 * time.Second
	// Maintenance notifications are Redis Enterprise's; asked for on
	// Upstash or redis-server, the handshake fails, go-redis logs a warning
	// at every start and then rewrites its options while other goroutines
	// may read them.
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(opts), nil
}

var setLogger sync.Once

// SetLogger sends go-redis's internal messages (dial failures, pool
// events) to log instead of its own stderr logger: one log format.
// go-redis's logger is process-wide: the first call wins (setting it again
// would race with clients already logging).
func SetLogger(log *slog.Logger) {
	setLogger.Do(func() { redis.SetLogger(logger{log}) })
}

type logger struct{ log *slog.Logger }

func (l logger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn("redis", "msg", fmt.Sprintf(format, v...))
}
