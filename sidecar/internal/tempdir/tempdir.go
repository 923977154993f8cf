// Package tempdir gives the sidecar's tests a temporary directory that is
// removed when the test ends, as t.TempDir does, also when the Windows
// test binaries run under Wine (scripts/test-windows).
package tempdir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WineEnv is the variable scripts/wine/exec sets for the test binaries it
// runs under Wine.
const WineEnv = "SAS_TEST_WINE"

// New returns a new directory for t, removed when t ends.
//
// It is t.TempDir, but under Wine: Go's os.RemoveAll on Windows deletes
// with FileDispositionInformationEx and falls back to the older call only
// on the statuses real Windows versions return when they lack it; Wine 8
// answers STATUS_NOT_IMPLEMENTED ("Invalid function"), so t.TempDir's own
// cleanup fails every test. Under Wine the tree is removed file by file
// with os.Remove (DeleteFile/RemoveDirectory, which Wine has), and any
// error from that still fails the test.
func New(t testing.TB) string {
	t.Helper()
	if os.Getenv(WineEnv) == "" {
		return t.TempDir()
	}
	pattern := strings.NewReplacer("/", "_", `\`, "_", ":", "_").Replace(t.Name())
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatalf("tempdir: %v", err)
	}
	t.Cleanup(func() {
		if os.RemoveAll(dir) == nil {
			return
		}
		if err := removeTree(dir); err != nil {
			t.Errorf("tempdir cleanup: %v", err)
		}
	})
	return dir
}

// removeTree removes dir and everything under it, children first.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			err = removeTree(p)
		} else {
			err = os.Remove(p)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
