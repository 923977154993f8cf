package tokens

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/signals-sorcery/sas/sidecar/filelock"
)

// Lock takes the per-user, per-profile refresh lock in dir (the user's own
// config dir, not a shared temp dir where another user could hold it),
// waiting until it is free or ctx ends. The OS releases it if the process
// dies, so a crash never leaves it stuck.
func Lock(ctx context.Context, dir, profile string) (unlock func(), err error) {
	path := filepath.Join(dir, "refresh-"+profile+".lock")
	for {
		unlock, err := filelock.Path(path)
		if err == nil {
			return unlock, nil
		}
		if !errors.Is(err, filelock.ErrLocked) {
			return nil, fmt.Errorf("take refresh lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for refresh lock: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
