//go:build windows

package main_test

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/signals-sorcery/sas/sidecar/localapi"
)

// The local API as a named pipe: what the shared tests need on Windows.

// notASocket is what the sidecar says of a --socket that names a plain file:
// only \\.\pipe\ names are served.
const notASocket = "is not a named pipe path"

// dialLocalAPI connects to the sidecar's named pipe.
func dialLocalAPI(ctx context.Context, path string) (net.Conn, error) {
	return localapi.DialPipe(ctx, path)
}

// checkSocketOS has nothing to look at from outside on Windows: a pipe has
// no file mode, and no curl speaks to pipes. Listen's DACL keeps others out.
func checkSocketOS(*testing.T, string) {}

// socketGone is nil once nobody serves the pipe: a named pipe goes with the
// last handle on it.
func socketGone(path string) error {
	c, err := localapi.DialPipe(context.Background(), path)
	switch {
	case err == nil:
		c.Close()
		return errors.New("the pipe still accepts connections")
	case errors.Is(err, os.ErrNotExist):
		return nil
	}
	return err
}

// stop closes the sidecar's stdin: Windows has no SIGTERM to send another
// process, and the app's end of stdin closing (the app quit or died) is how
// the sidecar learns to stop there.
func stop(s *sidecar) string {
	s.stdin.Close()
	return "stdin closed"
}

// leaveStaleSocket: a crashed run leaves no pipe behind to clean up, since
// the pipe dies with its process's handles: false.
func leaveStaleSocket(*testing.T, string) bool { return false }

// TestDefaultSocketIsPrivate: the default pipe's name carries the user's
// SID, \\.\pipe\sas-sidecar-<profile>-<SID>, so two users' sidecars on one
// machine never meet in the machine-wide pipe namespace.
func TestDefaultSocketIsPrivate(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	s := startSidecar(t, h, env)
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		t.Fatal(err)
	}
	if want := `\\.\pipe\sas-sidecar-local-` + u.User.Sid.String(); s.socket != want {
		t.Errorf("socket = %s, want %s", s.socket, want)
	}
}
