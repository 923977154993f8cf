package filelock_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/filelock"
	"github.com/signals-sorcery/sas/sidecar/internal/tempdir"
)

// TestPath: a lock held is refused to a second taker (another open file,
// as another process would be) until it is released.
func TestPath(t *testing.T) {
	path := filepath.Join(tempdir.New(t), "x.lock") // Wine: see tempdir
	unlock, err := filelock.Path(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := filelock.Path(path); !errors.Is(err, filelock.ErrLocked) {
		t.Errorf("second lock while held: %v, want ErrLocked", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := filelock.TryLock(f); ok || err != nil {
		t.Errorf("TryLock while held: %v, %v; want false, nil", ok, err)
	}
	unlock()
	again, err := filelock.Path(path)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	again()
	if fi, err := os.Stat(path); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0) {
		t.Errorf("lock file %v, %v: want private (0600)", fi, err)
	}
}
