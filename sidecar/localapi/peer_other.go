//go:build !linux && !darwin

package localapi

import (
	"errors"
	"net"
)

// peerUID is not available here (Windows has no peer credentials on
// AF_UNIX sockets; the other BSDs are not release targets): connections
// are refused rather than trusted. See README, "Windows".
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("peer credentials are not supported on this OS")
}

func checkPrivateDir(string) error { return nil }

func lockPath(string) (func(), error) { return func() {}, nil }
