//go:build unix

package localapi

import (
	"fmt"
	"os"
	"syscall"
)

// checkOwner refuses dir unless uid owns it and only uid can enter it.
func checkOwner(dir string, uid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != uid {
		return fmt.Errorf("the socket directory %s belongs to another user: refusing to use it", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("the socket directory %s is open to other users and cannot be restricted: %w", dir, err)
		}
	}
	return nil
}
