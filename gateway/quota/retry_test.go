package quota_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/gateway/redisclient"
)

// flakyProxy forwards TCP to Redis. With drop > 0, it swallows that many
// next replies, closing the client's connection each time (the command ran,
// the client sees EOF); with delay, it holds the next reply that long.
type flakyProxy struct {
	addr  string
	drop  atomic.Int64
	delay atomic.Int64
}

func newFlakyProxy(t *testing.T, target string) *flakyProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &flakyProxy{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() {
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						if p.drop.Add(-1) >= 0 {
							c.Close()
							s.Close()
							return
						}
						if d := p.delay.Swap(0); d > 0 {
							time.Sleep(time.Duration(d))
						}
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return p
}

// flakyLimiter is a limiter whose Redis client has the gateway's options
// (redisclient.New: one retry, 1 s read timeout), through a flaky proxy.
func flakyLimiter(t *testing.T) (*quota.Limiter, *flakyProxy) {
	t.Helper()
	url := testenv.RedisURL(t)
	opts, _ := redis.ParseURL(url)
	p := newFlakyProxy(t, opts.Addr)
	rdb, err := redisclient.New(strings.Replace(url, opts.Addr, p.addr, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return quota.NewLimiter(rdb, quota.LimiterOptions{}), p
}

func remaining(t *testing.T, l *quota.Limiter, user string, plan quota.Plan) (requests, tokens int64) {
	t.Helper()
	us, err := l.Peek(context.Background(), user, plan)
	if err != nil {
		t.Fatal(err)
	}
	return us[1].Remaining, us[2].Remaining
}

// TestRetriedScriptsApplyOnce: the Redis client retries a command whose
// reply was lost or late, after the script already ran; admission and
// settlement still take effect once. (Found in review: a settlement applied
// twice drove the counters below zero.)
func TestRetriedScriptsApplyOnce(t *testing.T) {
	ctx := context.Background()
	plan := quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 100, TokensPerDay: 1000, USDPerDay: 1000, USDPerMonth: 1000}
	t.Run("settlement, reply lost", func(t *testing.T) {
		l, p := flakyLimiter(t)
		u := user()
		a, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 100, Cost: 100})
		if err != nil {
			t.Fatal(err)
		}
		p.drop.Store(1)
		_ = l.Settle(ctx, a, quota.Settlement{Tokens: 10, Cost: 10})
		if req, tok := remaining(t, l, u, plan); req != 99 || tok != 990 {
			t.Errorf("after one request that used 10 tokens: %d requests and %d tokens remain, want 99 and 990", req, tok)
		}
	})
	t.Run("admission, reply late", func(t *testing.T) {
		l, p := flakyLimiter(t)
		u := user()
		remaining(t, l, u, plan)                      // the connection is up
		p.delay.Store(int64(1200 * time.Millisecond)) // past the 1 s read timeout
		a, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 100})
		if err != nil {
			t.Fatal(err)
		}
		_ = l.Settle(ctx, a, quota.Settlement{Tokens: 10})
		if req, tok := remaining(t, l, u, plan); req != 99 || tok != 990 {
			t.Errorf("after one request that used 10 tokens: %d requests and %d tokens remain, want 99 and 990", req, tok)
		}
	})
	t.Run("admission that fails after it ran", func(t *testing.T) {
		// Both the admission and its retry lose their replies: the caller
		// gets an error (503, nothing sent upstream), so the admission that
		// did happen is undone.
		l, p := flakyLimiter(t)
		u := user()
		remaining(t, l, u, plan)
		p.drop.Store(2)
		if _, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 500}); err == nil {
			t.Fatal("Admit succeeded with both replies lost")
		}
		if req, tok := remaining(t, l, u, plan); req != 100 || tok != 1000 {
			t.Errorf("a failed admission left %d requests and %d tokens remaining, want 100 and 1000", req, tok)
		}
	})
}
