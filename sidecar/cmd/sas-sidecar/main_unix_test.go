//go:build unix

package main_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The local API as a Unix socket: what the shared tests need per OS, and
// the tests of a socket file's directory.

// notASocket is what the sidecar says of a --socket that names a plain file.
const notASocket = "not a socket"

// dialLocalAPI connects to the sidecar's socket.
func dialLocalAPI(ctx context.Context, path string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "unix", path)
}

// checkSocketOS: curl reaches the socket as any other client would, and
// only this user can: the socket is 0600 in a 0700 directory.
func checkSocketOS(t *testing.T, path string) {
	t.Helper()
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, "-s", "--unix-socket", path, "http://sas/v1/me").Output()
		if err != nil || !strings.Contains(string(out), "dev@example.com") {
			t.Errorf("curl --unix-socket: %v %s", err, out)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir mode: %v %v", fi, err)
	}
}

// socketGone is nil once the socket file is removed.
func socketGone(path string) error {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return errors.New("the file is still there")
	case errors.Is(err, os.ErrNotExist):
		return nil
	}
	return err
}

// stop asks the sidecar to quit as the OS does at logout or shutdown.
func stop(s *sidecar) string {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	return "SIGTERM"
}

// leaveStaleSocket leaves a socket file at path that nobody listens on, as
// a crashed run does, for the next sidecar to clean up: true.
func leaveStaleSocket(t *testing.T, path string) bool {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: stale
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("no stale socket to test with: %v", err)
	}
	return true
}

// TestSocketDirTakenByAnotherUser: another local user created the socket's
// directory first (the attack on a predictable name in a shared temp dir):
// the socket is refused, and stdio keeps serving.
func TestSocketDirTakenByAnotherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("this test makes a directory owned by another user: run it as root (scripts/test in CI does)")
	}
	gw := devStack(t)
	h, env := home(t, gw)
	taken := filepath.Join(h, "taken")
	if err := os.Mkdir(taken, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(taken, 65534, 65534); err != nil { // nobody
		t.Fatal(err)
	}
	stdioOnly(t, env, "belongs to another user", "--socket", filepath.Join(taken, "sidecar.sock"))
}

// TestDefaultSocketIsPrivate: without XDG_RUNTIME_DIR the socket goes to the
// user's own cache directory, never to a fixed name in the shared temp dir.
func TestDefaultSocketIsPrivate(t *testing.T) {
	gw := devStack(t)
	h, env := home(t, gw)
	var kept []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") {
			kept = append(kept, kv)
		}
	}
	s := startSidecar(t, h, kept)
	if want := filepath.Join(h, ".cache", "sas", "sidecar-local.sock"); s.socket != want {
		t.Errorf("socket = %s, want %s", s.socket, want)
	}
}
