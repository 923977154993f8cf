//go:build linux || darwin

package localapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/signals-sorcery/sas/sidecar/filelock"
)

// peerUID is the uid of the process at the other end of c.
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid, cerr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) { uid, cerr = fdPeerUID(int(fd)) }); err != nil {
		return -1, err
	}
	return uid, cerr
}

// checkPrivateDir refuses a socket directory that is not this user's own.
func checkPrivateDir(dir string) error { return checkOwner(dir, os.Getuid()) }

// checkOwner refuses dir unless it is a real directory (not a symlink)
// that uid owns and nobody else can enter. It changes nothing: a directory
// open to others is the user's to fix (or pass another --socket).
func checkOwner(dir string, uid int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the socket directory %s is not a directory (a symlink?): refusing to use it", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != uid {
		return fmt.Errorf("the socket directory %s belongs to another user: refusing to use it", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("the socket directory %s is open to other users (mode %o): use a private directory (0700)", dir, fi.Mode().Perm())
	}
	return nil
}

// lockPath takes an exclusive lock on path, held until unlock; it fails at
// once if another process holds it.
func lockPath(path string) (unlock func(), err error) { return filelock.Path(path) }
