//go:build darwin

package localapi

import "golang.org/x/sys/unix"

// fdPeerUID reads the peer uid of a connected Unix socket (LOCAL_PEERCRED,
// the getsockopt behind getpeereid).
func fdPeerUID(fd int) (int, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return -1, err
	}
	return int(cred.Uid), nil
}
