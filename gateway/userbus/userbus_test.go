package userbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
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
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var buses []*userbus.Bus
	for i := range 3 {
		rdb, err := app.NewRedis(testenv.RedisURL(t))
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

	dead, err := app.NewRedis("redis://127.0.0.1:1/0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	userbus.New(dead, channel, testenv.Logger(t)).Changed(context.Background(), "user_x") // logs, returns
}
