package tokens

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/signals-sorcery/sas/sidecar/filelock"
)

// Lock takes the per-user, per-profile refresh lock in dir (the user's own
// config dir, not a shared temp dir where another user could hold it),
// waiting until it is free or ctx ends. The OS releases it if the process
// dies, so a crash never leaves it stuck.
func Lock(ctx context.Context, dir, profile string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "refresh-"+profile+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open refresh lock: %w", err)
	}
	for {
		ok, err := filelock.TryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("take refresh lock: %w", err)
		}
		if ok {
			return func() { _ = filelock.Unlock(f); _ = f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for refresh lock: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
