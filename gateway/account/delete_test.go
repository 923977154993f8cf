package account_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/account"
	"github.com/signals-sorcery/sas/shared/wire"
)

// fakeStore is an account.Store whose DeleteUser answers deleteErr.
type fakeStore struct {
	deleteErr error
}

var _ account.Store = (*fakeStore)(nil)

func (s *fakeStore) DeleteUser(context.Context, string) (gateway.User, error) {
	return gateway.User{}, s.deleteErr
}

func (s *fakeStore) ApplyAccountEvent(context.Context, gateway.AccountEvent) (bool, error) {
	return false, errors.New("ApplyAccountEvent: not expected in this test")
}

// TestDeleteStoreErrors: a database that cannot erase the account stops
// the deletion with its error — the account is not deleted at Clerk (the
// user could no longer sign in to retry, and their data would stay here);
// a user the store no longer has
// (not_found) is deleted at Clerk all the same.
func TestDeleteStoreErrors(t *testing.T) {
	down := wire.Wrap(wire.CodeUnavailable, "The database is unavailable.", errors.New("connection refused"))
	type outcome struct {
		Code       string // of Delete's error; "" for nil
		ClerkCalls []string
	}
	for _, tc := range []struct {
		name     string
		storeErr error
		want     outcome
	}{
		{"database down", down, outcome{Code: wire.CodeUnavailable}},
		{"no such user", wire.Errorf(wire.CodeNotFound, "No such user."),
			outcome{ClerkCalls: []string{"DELETE /v1/users/user_x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu  sync.Mutex
				got outcome
			)
			clerk := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				got.ClerkCalls = append(got.ClerkCalls, r.Method+" "+r.URL.Path)
				mu.Unlock()
				w.WriteHeader(http.StatusOK)
			}))
			t.Cleanup(clerk.Close)
			s, err := account.New(account.Options{Store: &fakeStore{deleteErr: tc.storeErr}, ClerkSecretKey: clerkKey, ClerkAPIURL: clerk.URL})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Delete(context.Background(), gateway.User{ClerkUserID: "user_x"})
			if err != nil {
				got.Code = wire.ErrorCode(err)
				if !errors.Is(err, tc.storeErr) {
					t.Errorf("Delete = %v, want the store's error %v", err, tc.storeErr)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Delete (-want +got):\n%s", diff)
			}
		})
	}
}
