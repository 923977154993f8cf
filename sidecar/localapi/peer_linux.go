//go:build linux

package localapi

import (
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerUID is the uid of the process at the other end (SO_PEERCRED).
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
	err = raw.Control(func(fd uintptr) {
		cred, e := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if e != nil {
			cerr = e
			return
		}
		uid = int(cred.Uid)
	})
	if err == nil {
		err = cerr
	}
	return uid, err
}

// checkPrivateDir refuses a socket directory that another user owns or
// that others can enter.
func checkPrivateDir(dir string) error { return checkOwner(dir, os.Getuid()) }
