package userbus_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/redisclient"
	"github.com/signals-sorcery/sas/gateway/userbus"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChangesReachEveryInstance: a change published by one instance reaches
// the others (and itself) over a real Redis; Run returns when its context
// ends (TestMain checks nothing is left running), and a Redis that cannot
// be reached makes Changed log, not fail.
func TestChangesReachEveryInstance(t *testing.T) {
	channel := "sas:users:changed:test:" + testenv.UUID()
	var mu sync.Mutex
	got := map[int][]string{}
	expiries := map[int]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var buses []*userbus.Bus
	for i := range 3 {
		rdb, err := redisclient.New(testenv.RedisURL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rdb.Close() })
		b := userbus.New(rdb, channel, testenv.Logger(t))
		buses = append(buses, b)
		wg.Go(func() {
			b.Run(ctx, func(id string) {
				mu.Lock()
				defer mu.Unlock()
				got[i] = append(got[i], id)
			}, func() {
				mu.Lock()
				defer mu.Unlock()
				expiries[i]++
			})
		})
	}
	// Subscriptions start asynchronously: publish until every instance has
	// heard one message, then the one that counts.
	testenv.WaitFor(t, "every instance subscribed", 10*time.Second, func() bool {
		buses[0].Changed(ctx, "user_warmup")
		mu.Lock()
		defer mu.Unlock()
		return len(got[0]) > 0 && len(got[1]) > 0 && len(got[2]) > 0
	})
	buses[1].Changed(ctx, "user_changed")
	testenv.WaitFor(t, "the change on every instance", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range 3 {
			if n := len(got[i]); n == 0 || got[i][n-1] != "user_changed" {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()
	if expiries[0] != 1 || expiries[1] != 1 || expiries[2] != 1 {
		t.Errorf("cache expiries at subscription: %v, want one each", expiries)
	}

	dead, err := redisclient.New("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	userbus.New(dead, channel, testenv.Logger(t)).Changed(context.Background(), "user_x") // logs, returns
}

// TestResubscribeExpires: when Redis drops the subscriber's connection (here
// CLIENT KILL of exactly that connection), go-redis subscribes again and
// the changes published in between are lost, so Run expiries the cache.
func TestResubscribeExpires(t *testing.T) {
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	name := "userbus-test-" + testenv.UUID()[:8]
	opts.ClientName = name
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	b := userbus.New(rdb, "sas:users:changed:test:"+testenv.UUID(), testenv.Logger(t))
	var expiries atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Run(ctx, func(string) {}, func() { expiries.Add(1) })
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, "the first subscription", 10*time.Second, func() bool { return expiries.Load() == 1 })
	admin := redis.NewClient(&redis.Options{Addr: opts.Addr})
	defer admin.Close()
	var id string
	for line := range strings.Lines(admin.ClientList(ctx).Val()) {
		if strings.Contains(line, " name="+name+" ") && strings.Contains(line, "sub=1") {
			id = strings.TrimPrefix(strings.Fields(line)[0], "id=")
		}
	}
	if id == "" {
		t.Fatalf("the subscriber's connection is not in CLIENT LIST")
	}
	if err := admin.Do(ctx, "CLIENT", "KILL", "ID", id).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "an expiry after the resubscription", 15*time.Second, func() bool { return expiries.Load() == 2 })
}
