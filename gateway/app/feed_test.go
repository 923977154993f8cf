package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/userfeed"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestChangeFeedKeepsUsersAndForgetsChanges: two instances on one
// PostgreSQL; a cached user is served from memory past the short TTL (the
// change feed vouches for it: no database read), and an
// account deleted by an UPDATE typed into the database — no announcement
// on the bus — is seen deleted by both within the contract's 10 s
// (about a second).
func TestChangeFeedKeepsUsersAndForgetsChanges(t *testing.T) {
	t.Parallel()
	d := testenv.NewDatabase(t)
	s := newStack(t, 0, d.PoolerURL, d.URL)
	const ttl = time.Second // the short TTL, shortened for the test
	s.add(app.Deps{UserTTL: ttl})
	s.add(app.Deps{UserTTL: ttl})
	user := "user_feed_" + testenv.UUID()[:8]
	tok := s.token(user)
	me := func() {
		t.Helper()
		for _, u := range s.urls {
			if status, body := call(t, "GET", u+"/v1/me", tok, ""); status != 200 {
				t.Fatalf("/v1/me: %d %s", status, body)
			}
		}
	}
	me()
	// The feed's next poll forgets the user it saw inserted; read once
	// more and cached.
	time.Sleep(2 * userfeed.PollEvery)
	me()
	// Past the short TTL: still a cache hit on both, while the feed polls.
	// The row is changed behind the store's back — without moving
	// updated_at, which only a trigger-less UPDATE could do — so a read
	// would show it and a hit does not.
	ctx := context.Background()
	if _, err := s.check.Exec(ctx, `ALTER TABLE users DISABLE TRIGGER users_touch`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.check.Exec(ctx, `UPDATE users SET username = 'unseen' WHERE clerk_user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	if _, err := s.check.Exec(ctx, `ALTER TABLE users ENABLE TRIGGER users_touch`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * ttl)
	for i, gw := range s.gws {
		u, err := gw.Users.UpsertUser(ctx, gateway.Identity{Subject: user})
		if err != nil || u.Username == "unseen" {
			t.Errorf("instance %d, twice the short TTL after the read: %+v, %v; want the cached row (a hit)", i, u, err)
		}
	}
	if _, err := s.check.Exec(ctx, `UPDATE users SET status = 'deleted', email = NULL, username = NULL WHERE clerk_user_id = $1`, user); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	for i, u := range s.urls {
		last := ""
		ok := false
		for time.Since(deleted) < 10*time.Second {
			status, body := call(t, "GET", u+"/v1/me", tok, "")
			if ok = status == 403 && strings.Contains(body, wire.CodeAccountDeleted); ok {
				break
			}
			last = fmt.Sprint(status, " ", body)
			time.Sleep(100 * time.Millisecond)
		}
		if !ok {
			t.Fatalf("instance %d still answers %s 10 s after the account was deleted", i, last)
		}
		t.Logf("instance %d refuses the deleted account %v after the UPDATE", i, time.Since(deleted).Round(time.Millisecond))
	}
}
