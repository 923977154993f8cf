package session_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/zalando/go-keyring"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/internal/keyringtest"
	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
	"github.com/signals-sorcery/sas/sidecar/login"
	"github.com/signals-sorcery/sas/sidecar/profile"
	"github.com/signals-sorcery/sas/sidecar/session"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// profileStore is a token store and a look at its raw profile item.
type profileStore struct {
	tokens.Store
	hasItem func() bool // the profile item (keyring account, file) exists
}

func fileProfileStore(t *testing.T) profileStore {
	dir := tempdir.New(t)
	return profileStore{tokens.NewFileStore(dir, "local"), func() bool {
		_, err := os.Stat(filepath.Join(dir, "profile-local.json"))
		return err == nil
	}}
}

func keyringProfileStore(t *testing.T) profileStore {
	keyringtest.Require(t)
	name := "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	s := tokens.NewKeyringStore(name, nil)
	t.Cleanup(func() { _ = s.Delete(context.Background()) })
	return profileStore{s, func() bool {
		_, err := keyring.Get("sas-"+name, tokens.AccountProfile)
		return err == nil
	}}
}

// TestUserinfoProfileKept: with a provider that serves the email and name
// only at userinfo, status names the user after sign-in and after refreshes
// whose new ID tokens lack them too: a refresh reads userinfo again (a new
// email shows), and keeps the stored profile when userinfo fails. Logout
// removes the stored profile. In both stores.
func TestUserinfoProfileKept(t *testing.T) {
	for name, open := range map[string]func(*testing.T) profileStore{"file": fileProfileStore, "keyring": keyringProfileStore} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := stacktest.Start(t)
			st.Userinfo.Only.Store(true)
			store := open(t)
			sess := st.Session(t, st.Settings(t), store)
			b := stacktest.NewBrowser()
			res, err := sess.SignIn(ctx, login.Options{Browser: b, Timeout: 20 * time.Second})
			b.Wait()
			if err != nil {
				t.Fatal(err)
			}
			if u := session.UserOf(res.Tokens.IDToken); u.Email != "" || u.Username != "" {
				t.Fatalf("the provider's ID token names the user (%+v): the test proves nothing", u)
			}
			want := wire.SidecarUser{ID: res.Identity.Subject, Email: "dev@example.com", Username: "Dev User"}
			status := func(when string, want wire.SidecarUser) {
				t.Helper()
				got, err := sess.Status(ctx)
				if err != nil || !got.SignedIn || got.User == nil {
					t.Fatalf("%s: status = %+v, %v", when, got, err)
				}
				if diff := cmp.Diff(want, *got.User); diff != "" {
					t.Errorf("%s: user (-want +got):\n%s", when, diff)
				}
			}
			status("after sign-in", want)

			refresh := func() {
				t.Helper()
				old, _ := store.Load(ctx)
				st.Clock.Advance(time.Hour)
				set, err := sess.Token(ctx)
				if err != nil || set.IDToken == old.IDToken {
					t.Fatalf("refresh: %v (new token: %v)", err, set.IDToken != old.IDToken)
				}
				if u := session.UserOf(set.IDToken); u.Email != "" {
					t.Fatalf("the refreshed ID token names the user (%+v)", u)
				}
			}
			st.Userinfo.SetEmail("renamed@example.com") // changed at the provider
			refresh()
			want.Email = "renamed@example.com"
			status("after a refresh", want)

			st.Userinfo.Down.Store(true)
			refresh()
			status("after a refresh while userinfo is down", want)

			if !store.hasItem() {
				t.Fatal("no profile item in the store")
			}
			if _, err := sess.Logout(ctx); err != nil {
				t.Fatal(err)
			}
			if store.hasItem() {
				t.Error("logout left the profile item")
			}
			if _, err := store.LoadProfile(ctx); !errors.Is(err, tokens.ErrNotFound) {
				t.Errorf("LoadProfile after logout: %v, want ErrNotFound", err)
			}
		})
	}
}

// unsignedIDToken is a JWT-shaped token with claims c (status reads a
// stored token without verifying it: it was verified when stored).
func unsignedIDToken(c map[string]any) string {
	b, _ := json.Marshal(c)
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(b) + ".c2ln"
}

// TestStatusUsesOnlyTheSubjectsProfile: the stored profile fills what the
// ID token lacks only when it is the same subject's; the token's own claims
// win; another subject's profile (an earlier user's) is never shown.
func TestStatusUsesOnlyTheSubjectsProfile(t *testing.T) {
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		name    string
		claims  map[string]any
		profile *tokens.Profile
		want    wire.SidecarUser
	}{
		{"the subject's profile fills the gaps", map[string]any{"sub": "user_b", "exp": exp},
			&tokens.Profile{Subject: "user_b", Email: "b@example.com", Username: "Bea"},
			wire.SidecarUser{ID: "user_b", Email: "b@example.com", Username: "Bea"}},
		{"the token's claims win", map[string]any{"sub": "user_b", "exp": exp, "email": "b2@example.com"},
			&tokens.Profile{Subject: "user_b", Email: "b@example.com", Username: "Bea"},
			wire.SidecarUser{ID: "user_b", Email: "b2@example.com", Username: "Bea"}},
		{"another subject's profile is not shown", map[string]any{"sub": "user_b", "exp": exp},
			&tokens.Profile{Subject: "user_a", Email: "a@example.com", Username: "Al"},
			wire.SidecarUser{ID: "user_b"}},
		{"no profile", map[string]any{"sub": "user_b", "exp": exp}, nil, wire.SidecarUser{ID: "user_b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := tempdir.New(t)
			store := tokens.NewFileStore(dir, "local")
			if err := store.Save(ctx, tokens.Set{IDToken: unsignedIDToken(tc.claims), RefreshToken: "rt_b"}); err != nil {
				t.Fatal(err)
			}
			if tc.profile != nil {
				if err := store.SaveProfile(ctx, *tc.profile); err != nil {
					t.Fatal(err)
				}
			}
			sess, err := session.Open(session.Options{Settings: profile.Settings{Profile: "local"}, Store: store, LockDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			st, err := sess.Status(ctx)
			if err != nil || !st.SignedIn || st.User == nil {
				t.Fatalf("status = %+v, %v", st, err)
			}
			if diff := cmp.Diff(tc.want, *st.User); diff != "" {
				t.Errorf("user (-want +got):\n%s", diff)
			}
		})
	}
}
