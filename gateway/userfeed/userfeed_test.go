package userfeed_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/gateway/userfeed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFeed: on a real PostgreSQL (through a proxy the test can cut), a
// change made by an UPDATE typed into the database reaches forget within a
// couple of polls; Seen moves while the polls work, stops while the
// database cannot be reached, and moves again after.
func TestFeed(t *testing.T) {
	d := testenv.NewDatabase(t)
	proxy, viaProxy := testenv.ProxyURL(t, d.URL)
	db, err := postgres.Open(context.Background(), viaProxy)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.UpsertUser(ctx, gateway.Identity{Subject: "user_feed"}); err != nil {
		t.Fatal(err)
	}
	f := userfeed.New(db, userfeed.Options{Every: 100 * time.Millisecond, Logger: testenv.Logger(t)})
	if !f.Seen().IsZero() {
		t.Fatal("seen before the first poll")
	}
	var mu sync.Mutex
	var forgotten []string
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Run(runCtx, func(id string) { mu.Lock(); forgotten = append(forgotten, id); mu.Unlock() }, func() {})
	}()
	defer func() { cancel(); <-done }()
	testenv.WaitFor(t, "a first poll", 5*time.Second, func() bool { return !f.Seen().IsZero() })
	// Polls after the insert's: nothing changed, nothing forgotten.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	quiet := len(forgotten)
	mu.Unlock()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	if len(forgotten) != quiet {
		t.Errorf("forgotten while nothing changed: %v", forgotten[quiet:])
	}
	mu.Unlock()
	if _, err := db.Pool().Exec(ctx, `UPDATE users SET plan = 'pro' WHERE clerk_user_id = 'user_feed'`); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the change forgotten", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(forgotten) > quiet && forgotten[len(forgotten)-1] == "user_feed"
	})
	// A transaction held open keeps every later change in the polls'
	// window: the change is listed by every poll, and forgotten once
	// (found in review: it was forgotten at every poll, so the users a
	// long transaction overlapped were cached for a second at most).
	hold, err := db.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback(ctx)
	if _, err := hold.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // an id: it holds the window
		t.Fatal(err)
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, id := range forgotten {
			if id == "user_feed" {
				n++
			}
		}
		return n
	}
	before := count()
	if _, err := db.Pool().Exec(ctx, `UPDATE users SET plan = 'free' WHERE clerk_user_id = 'user_feed'`); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the second change forgotten", 5*time.Second, func() bool { return count() == before+1 })
	polled := time.Now()
	testenv.WaitFor(t, "five more polls", 5*time.Second, func() bool { return f.Seen().After(polled.Add(500 * time.Millisecond)) })
	if n := count(); n != before+1 {
		t.Errorf("one change, listed by every poll while a transaction is open: forgotten %d times, want once", n-before)
	}
	_ = hold.Rollback(ctx)

	proxy.Cut()
	cut := time.Now()
	time.Sleep(time.Second)
	if s := f.Seen(); s.After(cut) {
		t.Errorf("seen %v after the database was cut at %v", s, cut)
	}
	proxy.Restore()
	testenv.WaitFor(t, "polls again", 15*time.Second, func() bool { return f.Seen().After(cut) })
}
