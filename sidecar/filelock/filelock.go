// Package filelock takes exclusive advisory locks on files — flock on Unix,
// LockFileEx on Windows — that the OS releases when the process dies, so a
// crash never leaves one held: the sidecar's one implementation, for the
// token refresh lock and the local API's socket lock.
package filelock

import (
	"errors"
	"os"
)

// ErrLocked means another process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Path opens path (created 0600 if missing) and locks it without waiting:
// ErrLocked when another process holds it. unlock releases and closes.
func Path(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	ok, err := TryLock(f)
	if err == nil && !ok {
		err = ErrLocked
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = Unlock(f); _ = f.Close() }, nil
}
