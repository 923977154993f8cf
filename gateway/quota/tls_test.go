package quota_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
)

// TestTLSAndOneRoundTrip runs the limiter against a TLS-only Redis and
// checks, from the server's own view (MONITOR), that an admission and a
// settlement are one command each from the client — one round trip — the
// scripts' own calls being marked "lua".
func TestTLSAndOneRoundTrip(t *testing.T) {
	url, pool := testenv.TLSRedis(t)
	opts, err := redis.ParseURL(url) // the parsing sas-gateway applies to REDIS_URL
	if err != nil {
		t.Fatal(err)
	}
	if opts.TLSConfig == nil {
		t.Fatal("rediss:// did not enable TLS")
	}
	opts.TLSConfig.RootCAs = pool
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	l := quota.NewLimiter(rdb, quota.LimiterOptions{})
	ctx := context.Background()
	plan := quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 1000, TokensPerDay: 100_000,
		ConcurrentRequests: 5, USDPerDay: 1_000_000, USDPerMonth: 10_000_000}
	res := quota.Reservation{Tokens: 100, Cost: 50}
	a, err := l.Admit(ctx, "user_warm", plan, res) // loads the scripts
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Settle(ctx, a, quota.Settlement{Tokens: 10, Cost: 5}); err != nil {
		t.Fatal(err)
	}

	// MONITOR over a raw TLS connection (go-redis's Monitor races with its
	// own pool): every line is "+<time> [<db> <source>] "cmd" …".
	mon, err := tls.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "rediss://"), "/0"), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	if _, err := mon.Write([]byte("MONITOR\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(mon)
	if ok, _ := br.ReadString('\n'); !strings.HasPrefix(ok, "+OK") {
		t.Fatalf("MONITOR answered %q", ok)
	}
	lines := make(chan string, 1000)
	go func() {
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				close(lines)
				return
			}
			lines <- line
		}
	}()
	for range 25 {
		a, err := l.Admit(ctx, "user_tls", plan, res)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Settle(ctx, a, quota.Settlement{Tokens: 10, Cost: 5}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Ping(ctx).Err(); err != nil { // a marker: everything before it was seen
		t.Fatal(err)
	}
	fromClient, fromScript := map[string]int{}, 0
	for done := false; !done; {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("MONITOR ended; saw %v", fromClient)
			}
			_, rest, _ := strings.Cut(line, "[")
			src, cmd, _ := strings.Cut(rest, "] ")
			name := strings.ToLower(strings.Trim(strings.SplitN(strings.TrimSpace(cmd), " ", 2)[0], `"`))
			if strings.HasSuffix(src, " lua") {
				fromScript++
				continue
			}
			fromClient[name]++
			done = name == "ping"
		case <-time.After(5 * time.Second):
			t.Fatalf("MONITOR saw %v", fromClient)
		}
	}
	delete(fromClient, "ping")
	if fromClient["evalsha"] != 50 || len(fromClient) != 1 || fromScript == 0 {
		t.Errorf("25 admissions and settlements sent %v (script calls %d); want exactly 50 evalsha", fromClient, fromScript)
	}
}
