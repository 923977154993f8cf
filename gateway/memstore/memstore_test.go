package memstore_test

import (
	"context"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/memstore"
)

// TestEveryUserChangeIsAnnounced: as the postgres store, the in-memory
// store announces each user it changes, once, and nothing else; every
// exported method is listed as changing a user or not.
func TestEveryUserChangeIsAnnounced(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(nil)
	var heard []string
	s.AnnounceTo(func(_ context.Context, id string) { heard = append(heard, id) })
	take := func() []string { h := heard; heard = nil; return h }
	changes := map[string]func(user string) error{
		"UpsertUser": func(user string) error {
			_, err := s.UpsertUser(ctx, gateway.Identity{Subject: user, Email: "new@example.com"})
			return err
		},
		"SetPlan":    func(user string) error { _, err := s.SetPlan(ctx, user, "pro"); return err },
		"DeleteUser": func(user string) error { _, err := s.DeleteUser(ctx, user); return err },
		"ApplyAccountEvent": func(user string) error {
			_, err := s.ApplyAccountEvent(ctx, gateway.AccountEvent{ID: "msg_" + user, Type: gateway.AccountDeleted, ClerkUserID: user, At: time.Now()})
			return err
		},
	}
	others := []string{"AnnounceTo", "Ping", "PruneUsage", "RecordUsage", "Usage", "UsageEvents"}
	for m := range reflect.TypeFor[*memstore.Store]().Methods() {
		if _, ok := changes[m.Name]; !ok && !slices.Contains(others, m.Name) {
			t.Errorf("%s is not listed: say whether it changes a user (and, if it does, test that it announces it)", m.Name)
		}
	}
	for name, change := range changes {
		user := "user_" + name
		if _, err := s.UpsertUser(ctx, gateway.Identity{Subject: user, Email: "old@example.com"}); err != nil {
			t.Fatal(err)
		}
		if got := take(); len(got) != 0 {
			t.Fatalf("a first sign-in announced %v", got)
		}
		if err := change(user); err != nil {
			t.Fatal(err)
		}
		if got := take(); !slices.Equal(got, []string{user}) {
			t.Errorf("%s announced %v, want [%s]", name, got, user)
		}
	}
	// Nothing changed (or a first sign-in, which no cache holds yet):
	// nothing announced.
	if _, err := s.UpsertUser(ctx, gateway.Identity{Subject: "user_UpsertUser", Email: "new@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetPlan(ctx, "user_nobody", "pro"); err == nil {
		t.Error("SetPlan of no such user succeeded")
	}
	if _, err := s.ApplyAccountEvent(ctx, gateway.AccountEvent{ID: "msg_user_ApplyAccountEvent", Type: gateway.AccountDeleted, ClerkUserID: "user_ApplyAccountEvent"}); err != nil {
		t.Fatal(err)
	}
	if got := take(); len(got) != 0 {
		t.Errorf("an unchanged upsert, a missing user and a duplicate event announced %v", got)
	}
}
