//go:build unix

package localapi_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/sidecar/localapi"
)

// TestDefaultSocketPath: the socket goes in the per-user runtime directory
// when there is one and the path fits, else in the user's cache directory.
func TestDefaultSocketPath(t *testing.T) {
	cache := filepath.Join("/home/ada", ".cache")
	if runtime.GOOS == "darwin" {
		cache = filepath.Join("/home/ada", "Library", "Caches")
	}
	long := "/" + strings.Repeat("x", localapi.MaxSocketPath)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"runtime directory", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000", "HOME": "/home/ada"}, "/run/user/1000/sas/sidecar-work.sock"},
		{"no runtime directory", map[string]string{"HOME": "/home/ada"}, cache + "/sas/sidecar-work.sock"},
		{"runtime directory too long", map[string]string{"XDG_RUNTIME_DIR": long, "HOME": "/home/ada"}, cache + "/sas/sidecar-work.sock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := localapi.DefaultSocketPath(func(k string) string { return tc.env[k] }, "work")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DefaultSocketPath (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDefaultSocketPathFallback: when neither the runtime directory nor the
// cache directory fits in a socket path, the socket goes in a fresh private
// directory in the temp dir, a new one each time — never a fixed name such
// as $TMPDIR/sas, which another local user could create first.
func TestDefaultSocketPathFallback(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	long := "/" + strings.Repeat("x", localapi.MaxSocketPath)
	env := map[string]string{"XDG_RUNTIME_DIR": long, "HOME": long}
	getenv := func(k string) string { return env[k] }

	type dir struct {
		Parent string
		Socket string
		Mode   os.FileMode
		UID    int
	}
	want := dir{Parent: tmp, Socket: "sidecar-default.sock", Mode: os.ModeDir | 0o700, UID: os.Getuid()}
	seen := map[string]bool{}
	for range 2 {
		p, err := localapi.DefaultSocketPath(getenv, "default")
		if err != nil {
			t.Fatal(err)
		}
		d := filepath.Dir(p)
		switch {
		case d == filepath.Join(tmp, "sas"):
			t.Errorf("socket path %s: a fixed name in the temp dir, want a fresh directory", p)
		case seen[d]:
			t.Errorf("socket path %s: the directory of an earlier call, want a fresh one", p)
		}
		seen[d] = true
		got := dir{Parent: filepath.Dir(d), Socket: filepath.Base(p)}
		if fi, err := os.Lstat(d); err != nil {
			t.Errorf("socket directory: %v", err)
		} else {
			got.Mode, got.UID = fi.Mode(), int(fi.Sys().(*syscall.Stat_t).Uid)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("socket path %s (-want +got):\n%s", p, diff)
		}
	}
}

// TestListenLockErrors (found in review): a socket another sidecar serves
// is "in use"; a lock file that cannot be opened is that error, not "in
// use" (which would send the user looking for a sidecar that is not there).
func TestListenLockErrors(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sas-lock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	ln, err := localapi.Listen(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := localapi.Listen(path, slog.New(slog.DiscardHandler)); !errors.Is(err, localapi.ErrInUse) {
		t.Errorf("a second Listen: %v, want ErrInUse", err)
	}
	ln.Close()
	other := filepath.Join(dir, "t.sock")
	if err := os.Mkdir(other+".lock", 0o700); err != nil { // a lock that cannot be opened for writing
		t.Fatal(err)
	}
	if _, err := localapi.Listen(other, slog.New(slog.DiscardHandler)); err == nil || errors.Is(err, localapi.ErrInUse) || !strings.Contains(err.Error(), "lock") {
		t.Errorf("an unusable lock file: %v, want its own error", err)
	}
}
