package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/shared/wire"
)

// announced records the store's announcements and, for each, the user's
// change stamp as a second connection sees it at that moment: equal to
// the stamp after the call returned means the announcement came after the
// commit.
type announced struct {
	mu   sync.Mutex
	db   *postgres.DB
	ids  []string
	seen map[string]string
}

func (a *announced) hear(ctx context.Context, id string) {
	stamp := changeStamp(ctx, a.db, id)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, id)
	a.seen[id] = stamp
}

func (a *announced) take() ([]string, map[string]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids, seen := a.ids, a.seen
	a.ids, a.seen = nil, map[string]string{}
	return ids, seen
}

func changeStamp(ctx context.Context, db *postgres.DB, id string) string {
	var x *string
	if err := db.Pool().QueryRow(ctx, `SELECT changed_xid::text FROM users WHERE clerk_user_id = $1`, id).Scan(&x); err != nil || x == nil {
		return "none"
	}
	return *x
}

// TestEveryUserChangeIsAnnounced: the store is the one publisher of user
// changes. Every exported method of the store (and of a billing event's
// transaction) is listed here as changing a user row or not — a method
// added without being listed fails the test — and each one that changes a
// row announces that user once, after its commit; one that does not, or
// fails, or is rolled back, announces nothing.
func TestEveryUserChangeIsAnnounced(t *testing.T) {
	type call func(ctx context.Context, db *postgres.DB, user string) error
	inTx := func(f func(ctx context.Context, tx postgres.BillingTx, user string) error) call {
		return func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.WithBillingEvent(ctx, "evt_"+user+fmt.Sprint(time.Now().UnixNano()), "test", time.Now(), func(tx postgres.BillingTx) error {
				return f(ctx, tx, user)
			})
			return err
		}
	}
	// Methods that change a user's row, each called on an existing user.
	changes := map[string]call{
		"UpsertUser": func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.UpsertUser(ctx, gateway.Identity{Subject: user, Email: "new-" + user + "@example.com"})
			return err
		},
		"SetPlan": func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.SetPlan(ctx, user, "pro")
			return err
		},
		"SetStatus": func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.SetStatus(ctx, user, "suspended")
			return err
		},
		"DeleteUser": func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.DeleteUser(ctx, user)
			return err
		},
		"ApplyAccountEvent": func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.ApplyAccountEvent(ctx, gateway.AccountEvent{ID: "msg_" + user, Type: gateway.AccountDeleted, ClerkUserID: user, At: time.Now()})
			return err
		},
		"SetStripeCustomer": func(ctx context.Context, db *postgres.DB, user string) error {
			_, err := db.SetStripeCustomer(ctx, user, "cus_"+user)
			return err
		},
		"BillingTx.LinkCheckout": inTx(func(ctx context.Context, tx postgres.BillingTx, user string) error {
			return tx.LinkCheckout(ctx, user, "cus_"+user, "sub_"+user)
		}),
		"BillingTx.ApplySubscription": inTx(func(ctx context.Context, tx postgres.BillingTx, user string) error {
			_, err := tx.ApplySubscription(ctx, "sub_"+user, user, time.Now(), postgres.RankCreated, "pro")
			return err
		}),
		"BillingTx.RecordEvent": inTx(func(ctx context.Context, tx postgres.BillingTx, user string) error {
			return tx.RecordEvent(ctx, user, "invoice.paid", time.Now())
		}),
	}
	// Methods that change no user row (they read, or write other tables,
	// or manage the store itself): never an announcement.
	others := []string{"AnnounceTo", "Billing", "ChangedUsers", "Close", "Migrate", "Ping", "Pool", "PruneUsage",
		"RecordUsage", "Usage", "UsageByUser", "User", "WithBillingEvent",
		"PutTemplate", "RollbackTemplate", "CurrentTemplates", "Template",
		"BillingTx.UserByCustomer", "BillingTx.UserDeleted", "BillingTx.UserExists"}
	var methods []string
	for _, typ := range []reflect.Type{reflect.TypeFor[*postgres.DB](), reflect.TypeFor[postgres.BillingTx]()} {
		prefix := ""
		if typ.Kind() != reflect.Pointer {
			prefix = typ.Name() + "."
		}
		for m := range typ.Methods() {
			methods = append(methods, prefix+m.Name)
		}
	}
	for _, m := range methods {
		if _, ok := changes[m]; !ok && !slices.Contains(others, m) {
			t.Errorf("%s is not listed: say whether it changes a user's row (and, if it does, test that it announces it)", m)
		}
	}

	connections(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		a := &announced{db: db, seen: map[string]string{}}
		db.AnnounceTo(a.hear)
		n := 0
		newUser := func(t *testing.T) string {
			t.Helper()
			n++
			user := fmt.Sprintf("user_%d", n)
			if _, err := db.UpsertUser(ctx, gateway.Identity{Subject: user, Email: user + "@example.com"}); err != nil {
				t.Fatal(err)
			}
			if ids, _ := a.take(); len(ids) != 0 {
				t.Fatalf("a first sign-in announced %v: no instance holds the user yet, and the cache would forget its own read", ids)
			}
			return user
		}
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for k := range changes {
				if !yield(k) {
					return
				}
			}
		}) {
			t.Run(name, func(t *testing.T) {
				user := newUser(t)
				if err := changes[name](ctx, db, user); err != nil {
					t.Fatal(err)
				}
				ids, seen := a.take()
				if !slices.Equal(ids, []string{user}) {
					t.Fatalf("announced %v, want [%s] once", ids, user)
				}
				if after := changeStamp(ctx, db, user); seen[user] != after {
					t.Errorf("announced before the commit: a second connection saw stamp %s, the change is %s", seen[user], after)
				}
			})
		}
		t.Run("nothing changed, failed or rolled back", func(t *testing.T) {
			user := newUser(t)
			for _, c := range []struct {
				what string
				f    func() error
			}{
				{"an upsert with the same claims", func() error {
					_, err := db.UpsertUser(ctx, gateway.Identity{Subject: user, Email: user + "@example.com"})
					return err
				}},
				{"a plan for no such user", func() error {
					_, err := db.SetPlan(ctx, "user_nobody", "pro")
					return ignoreNotFound(err)
				}},
				{"an unknown plan", func() error {
					_, err := db.SetPlan(ctx, user, "gold")
					return ignoreBadRequest(err)
				}},
				{"a duplicate account event", func() error {
					ev := gateway.AccountEvent{ID: "msg_dup_" + user, Type: gateway.AccountUpdated, ClerkUserID: user, Email: "x@example.com", At: time.Now()}
					if _, err := db.ApplyAccountEvent(ctx, ev); err != nil {
						return err
					}
					a.take() // the first delivery announced
					_, err := db.ApplyAccountEvent(ctx, ev)
					return err
				}},
				{"a billing event rolled back", func() error {
					_, err := db.WithBillingEvent(ctx, "evt_rollback_"+user, "test", time.Now(), func(tx postgres.BillingTx) error {
						if err := tx.LinkCheckout(ctx, user, "cus_x", "sub_x"); err != nil {
							return err
						}
						return errors.New("the handler failed")
					})
					if err == nil {
						return errors.New("WithBillingEvent did not fail")
					}
					return nil
				}},
			} {
				what, f := c.what, c.f
				if err := f(); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if ids, _ := a.take(); len(ids) != 0 {
					t.Errorf("%s announced %v", what, ids)
				}
			}
		})
	})
}

func ignoreNotFound(err error) error   { return ignoreCode(err, wire.CodeNotFound) }
func ignoreBadRequest(err error) error { return ignoreCode(err, wire.CodeBadRequest) }

// ignoreCode is nil when err has the code, an error otherwise.
func ignoreCode(err error, code string) error {
	if got := wire.ErrorCode(err); err != nil && got == code {
		return nil
	}
	return fmt.Errorf("got %v, want %s", err, code)
}
