//go:build !linux && !darwin && !windows

package localapi

import (
	"errors"
	"net"
)

// peerUID is not available here (the other BSDs are not release targets):
// connections are refused rather than trusted. Windows serves a named pipe
// instead (pipe_windows.go).
func peerUID(net.Conn) (int, error) {
	return -1, errors.New("peer credentials are not supported on this OS")
}

func checkPrivateDir(string) error { return nil }

func lockPath(string) (func(), error) { return func() {}, nil }
