package tokens_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zalando/go-keyring"

	"github.com/signals-sorcery/sas/sidecar/internal/keyringtest"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// sampleExpiry is the exp of sample's ID tokens.
var sampleExpiry = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// sample is a token set whose ID token is JWT-shaped, about n bytes long,
// with exp = sampleExpiry.
func sample(n int) tokens.Set {
	exp := sampleExpiry
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"exp":` + strconv.FormatInt(exp.Unix(), 10) + `,"pad":"` + strings.Repeat("a", n) + `"}`))
	return tokens.Set{
		IDToken:      "eyJhbGciOiJSUzI1NiJ9." + payload + ".c2ln",
		RefreshToken: "rt_" + strings.Repeat("b", 40),
	}
}

// roundTrip runs the behaviour every Store must have.
func roundTrip(t *testing.T, s tokens.Store) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.Load(ctx); !errors.Is(err, tokens.ErrNotFound) {
		t.Fatalf("Load of an empty store: %v, want ErrNotFound", err)
	}
	for _, size := range []int{1200, 6 << 10, 300} { // whole, split in parts, whole again
		want := sample(size)
		if err := s.Save(ctx, want); err != nil {
			t.Fatalf("Save %d bytes: %v", size, err)
		}
		got, err := s.Load(ctx)
		if err != nil {
			t.Fatalf("Load %d bytes: %v", size, err)
		}
		if got.IDToken != want.IDToken || got.RefreshToken != want.RefreshToken || !got.Expiry().Equal(sampleExpiry) {
			t.Fatalf("round trip of %d bytes: got %d-byte token, refresh %q, expiry %v", size, len(got.IDToken), got.RefreshToken, got.Expiry())
		}
	}
	for range 2 { // idempotent
		if err := s.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Load(ctx); !errors.Is(err, tokens.ErrNotFound) {
		t.Errorf("Load after Delete: %v", err)
	}
}

// TestStoresKeepProfile: every store keeps the user's profile as its own
// item beside the tokens (keyring account "profile", file
// profile-<profile>.json), replaces it whole, and Delete removes it with
// the rest.
func TestStoresKeepProfile(t *testing.T) {
	stores := map[string]func(t *testing.T) (tokens.Store, func() bool){
		"file": func(t *testing.T) (tokens.Store, func() bool) {
			dir := tempdir.New(t)
			return tokens.NewFileStore(dir, "local"), func() bool {
				_, err := os.Stat(filepath.Join(dir, "profile-local.json"))
				return err == nil
			}
		},
		"keyring": func(t *testing.T) (tokens.Store, func() bool) {
			kr := &fakeKeyring{items: map[string]string{}, limit: 2560}
			return tokens.NewKeyringStore("prod", kr), func() bool {
				kr.mu.Lock()
				defer kr.mu.Unlock()
				_, ok := kr.items["sas-prod/profile"]
				return ok
			}
		},
		"secret service": func(t *testing.T) (tokens.Store, func() bool) {
			keyringtest.Require(t)
			name := "test-" + strings.ReplaceAll(t.Name(), "/", "-")
			s := tokens.NewKeyringStore(name, nil)
			t.Cleanup(func() { _ = s.Delete(context.Background()) })
			return s, func() bool {
				_, err := keyring.Get("sas-"+name, tokens.AccountProfile)
				return err == nil
			}
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, hasItem := open(t)
			if _, err := s.LoadProfile(ctx); !errors.Is(err, tokens.ErrNotFound) {
				t.Fatalf("LoadProfile of an empty store: %v, want ErrNotFound", err)
			}
			if err := s.Save(ctx, sample(300)); err != nil {
				t.Fatal(err)
			}
			for _, want := range []tokens.Profile{
				{Subject: "user_a", Email: "a@example.com", Username: "Al"},
				{Subject: "user_b", Email: "b@example.com"}, // replaced whole: no name left from user_a
			} {
				if err := s.SaveProfile(ctx, want); err != nil {
					t.Fatal(err)
				}
				if got, err := s.LoadProfile(ctx); err != nil || got != want {
					t.Fatalf("LoadProfile = %+v, %v; want %+v", got, err, want)
				}
			}
			if !hasItem() {
				t.Fatal("no profile item under its name")
			}
			if err := s.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := s.LoadProfile(ctx); !errors.Is(err, tokens.ErrNotFound) || hasItem() {
				t.Errorf("after Delete: LoadProfile %v, item left %v", err, hasItem())
			}
		})
	}
}

func TestFileStore(t *testing.T) {
	dir := filepath.Join(tempdir.New(t), "sas")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := tokens.NewFileStore(dir, "local")
	roundTrip(t, s)
	if err := s.Save(context.Background(), sample(100)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, "tokens-local.json"))
	// Windows has no mode bits (Go reports 0666): the file is private by
	// the ACL it inherits from the user's %AppData%.
	if err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600) {
		t.Errorf("token file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	// The file's expiry is the token's, written for people; a file whose
	// expiry says otherwise (edited, or written by an older version) does
	// not change what the token's own exp says.
	b, _ := os.ReadFile(filepath.Join(dir, "tokens-local.json"))
	if !strings.Contains(string(b), `"expiry":"2030-01-02T03:04:05Z"`) {
		t.Errorf("the file's expiry is not the token's: %s", b)
	}
	edited := strings.Replace(string(b), "2030-01-02", "2099-01-02", 1)
	if err := os.WriteFile(filepath.Join(dir, "tokens-local.json"), []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(context.Background()); err != nil || !got.Expiry().Equal(sampleExpiry) {
		t.Errorf("edited file: expiry %v (%v), want the token's %v", got.Expiry(), err, sampleExpiry)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokens-local.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "logout") {
		t.Errorf("damaged file: %v", err)
	}
}

func TestDirIsPrivate(t *testing.T) {
	config := tempdir.New(t)
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv("APPDATA", config) // the config dir on Windows
	t.Setenv("HOME", tempdir.New(t))
	if err := os.MkdirAll(filepath.Join(config, "sas"), 0o777); err != nil {
		t.Fatal(err)
	}
	dir, err := tokens.Dir()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Windows has no mode bits (Go reports 0777): %AppData%'s ACL makes
	// the directory the user's own.
	if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode = %v, want 0700", fi.Mode().Perm())
	}
}

// fakeKeyring is an in-memory Keyring that, like the macOS and Windows
// backends, refuses values over a size limit.
type fakeKeyring struct {
	mu    sync.Mutex
	items map[string]string
	limit int
	block chan struct{} // when set, every call waits on it
}

func (f *fakeKeyring) wait() {
	if f.block != nil {
		<-f.block
	}
}

func (f *fakeKeyring) Get(s, a string) (string, error) {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.items[s+"/"+a]
	if !ok {
		return "", keyring.ErrNotFound
	}
	return v, nil
}

func (f *fakeKeyring) Set(s, a, v string) error {
	f.wait()
	if len(v) > f.limit {
		return keyring.ErrSetDataTooBig
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.items[s+"/"+a] = v
	return nil
}

func (f *fakeKeyring) Delete(s, a string) error {
	f.wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.items[s+"/"+a]; !ok {
		return keyring.ErrNotFound
	}
	delete(f.items, s+"/"+a)
	return nil
}

func TestKeyringStoreSplitsLargeValues(t *testing.T) {
	kr := &fakeKeyring{items: map[string]string{}, limit: 2560}
	s := tokens.NewKeyringStore("prod", kr)
	roundTrip(t, s)
	ctx := context.Background()
	// A value that fits is stored whole under the contract's names, so
	// `security find-generic-password -s sas-prod -a id_token -w` prints it.
	small := sample(1000)
	if err := s.Save(ctx, small); err != nil {
		t.Fatal(err)
	}
	if kr.items["sas-prod/id_token"] != small.IDToken || kr.items["sas-prod/expiry"] != "2030-01-02T03:04:05Z" {
		t.Errorf("items = %v", keysOf(kr.items))
	}
	// A big one is split, and shrinking it removes the parts it left.
	if err := s.Save(ctx, sample(6<<10)); err != nil {
		t.Fatal(err)
	}
	marker := kr.items["sas-prod/id_token"]
	if !strings.HasPrefix(marker, "sas-parts:") || !strings.HasSuffix(marker, ":4") {
		t.Errorf("items after a 6 KB save = %v", keysOf(kr.items))
	}
	if err := s.Save(ctx, small); err != nil {
		t.Fatal(err)
	}
	for k := range kr.items {
		if strings.HasPrefix(k, "sas-prod/id_token.") {
			t.Errorf("stale part %s left behind", k)
		}
	}
}

// TestKeyringReaderNeverMixesValues: a reader racing writers of large
// values gets one whole value or the other, never parts of both.
func TestKeyringReaderNeverMixesValues(t *testing.T) {
	kr := &fakeKeyring{items: map[string]string{}, limit: 2560}
	s := tokens.NewKeyringStore("prod", kr)
	a, b := sample(6<<10), sample(6<<10)
	b.IDToken = strings.ReplaceAll(b.IDToken, "YWFh", "YmJi") // same length, other bytes
	ctx := context.Background()
	_ = s.Save(ctx, a)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			set := a
			if i%2 == 1 {
				set = b
			}
			_ = s.Save(ctx, set)
		}
	})
	for range 2000 {
		got, err := s.Load(ctx)
		if err != nil && !errors.Is(err, tokens.ErrDamaged) {
			t.Fatal(err)
		}
		if err == nil && got.IDToken != a.IDToken && got.IDToken != b.IDToken {
			t.Fatal("read a mix of two values")
		}
	}
	close(stop)
	wg.Wait()
}

func keysOf(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestKeyringStoreTimeout: a keyring that never answers (an unlock prompt
// nobody sees) becomes ErrUnavailable, naming --token-store file.
func TestKeyringStoreTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	s := tokens.NewKeyringStore("prod", &fakeKeyring{items: map[string]string{}, limit: 2560, block: block})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.Load(ctx)
	if !errors.Is(err, tokens.ErrUnavailable) || !strings.Contains(err.Error(), "--token-store file") {
		t.Errorf("err = %v", err)
	}
}

// TestKeyringStoreSecretService runs the store against the real Secret
// Service that scripts/test starts (gnome-keyring in a private D-Bus
// session).
func TestKeyringStoreSecretService(t *testing.T) {
	keyringtest.Require(t)
	profile := "test-" + strings.ReplaceAll(t.Name(), "/", "-")
	roundTrip(t, tokens.NewKeyringStore(profile, nil))
	// The items are really in the Secret Service under the contract's names.
	s := tokens.NewKeyringStore(profile, nil)
	if err := s.Save(context.Background(), sample(500)); err != nil {
		t.Fatal(err)
	}
	defer s.Delete(context.Background())
	if v, err := keyring.Get("sas-"+profile, "id_token"); err != nil || v != sample(500).IDToken {
		t.Errorf("keyring.Get(sas-%s, id_token) = %d bytes, %v", profile, len(v), err)
	}
}

// TestLockExcludes: the refresh lock admits one holder at a time.
func TestLockExcludes(t *testing.T) {
	dir := tempdir.New(t)
	var inside, maxInside atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			unlock, err := tokens.Lock(context.Background(), dir, "prod")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				m := maxInside.Load()
				if n <= m || maxInside.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			unlock()
		})
	}
	wg.Wait()
	if maxInside.Load() != 1 {
		t.Errorf("%d holders at once", maxInside.Load())
	}
	// A held lock makes a waiter give up when its context ends.
	unlock, err := tokens.Lock(context.Background(), dir, "prod")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := tokens.Lock(ctx, dir, "prod"); err == nil {
		t.Error("took a held lock")
	}
}
