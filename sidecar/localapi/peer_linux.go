//go:build linux

package localapi

import "golang.org/x/sys/unix"

// fdPeerUID reads the peer uid of a connected Unix socket (SO_PEERCRED).
func fdPeerUID(fd int) (int, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return -1, err
	}
	return int(cred.Uid), nil
}
