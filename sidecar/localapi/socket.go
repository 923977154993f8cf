//go:build !windows

package localapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/signals-sorcery/sas/sidecar/filelock"
)

// MaxSocketPath keeps socket paths under the 104-byte sun_path of macOS
// (Linux allows 108).
const MaxSocketPath = 100

// DefaultSocketPath is $XDG_RUNTIME_DIR/sas/sidecar-<profile>.sock (the
// per-user runtime directory), else sas/sidecar-<profile>.sock in the user's
// own cache directory (~/.cache, ~/Library/Caches), both private to the
// user. Never a fixed name in a shared temp dir: another local user could
// create it first and keep the sidecar from starting. When neither fits in
// a socket path, a fresh directory with a random name is made in the temp
// dir (the app learns the path from the ready notification).
func DefaultSocketPath(getenv func(string) string, profile string) (string, error) {
	name := "sidecar-" + profile + ".sock"
	if d := getenv("XDG_RUNTIME_DIR"); d != "" {
		if p := filepath.Join(d, "sas", name); len(p) <= MaxSocketPath {
			return p, nil
		}
	}
	if d, err := userCacheDir(getenv); err == nil {
		if p := filepath.Join(d, "sas", name); len(p) <= MaxSocketPath {
			return p, nil
		}
	}
	dir, err := os.MkdirTemp("", "sas-")
	if err != nil {
		return "", fmt.Errorf("make a private socket directory: %w", err)
	}
	return filepath.Join(dir, name), nil
}

// userCacheDir is os.UserCacheDir with its environment read through getenv.
func userCacheDir(getenv func(string) string) (string, error) {
	if runtime.GOOS == "linux" {
		if d := getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
			return d, nil
		}
	}
	if h := getenv("HOME"); filepath.IsAbs(h) {
		if runtime.GOOS == "darwin" {
			return filepath.Join(h, "Library", "Caches"), nil
		}
		return filepath.Join(h, ".cache"), nil
	}
	return os.UserCacheDir()
}

// Listen prepares path's directory (created 0700; an existing one must
// belong to this user, not be a symlink, and be closed to others), takes a
// lock that one sidecar per socket holds for its lifetime, removes a stale
// socket left by a crashed run (only a socket, never another file), and
// listens with mode 0600. The returned listener checks every connection's
// peer uid and releases the lock when closed.
func Listen(path string, log *slog.Logger) (net.Listener, error) {
	if len(path) > MaxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, over the %d a Unix socket allows on macOS: pass a shorter --socket", path, len(path), MaxSocketPath)
	}
	dir := filepath.Dir(path)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create the socket directory: %w", err)
		}
	}
	if err := checkPrivateDir(dir); err != nil {
		return nil, err
	}
	// The lock, not the socket, says who serves: checking and removing a
	// stale socket is safe only while holding it (two sidecars starting at
	// once would otherwise each remove the other's fresh socket).
	unlock, err := lockPath(path + ".lock")
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("%w on %s: quit it first, or use another --socket / --profile", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("take the socket's lock %s.lock: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			unlock()
			return nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close() // served, yet we hold the lock: a sidecar from before the lock existed
			unlock()
			return nil, fmt.Errorf("%w on %s: quit it first, or use another --socket / --profile", ErrInUse, path)
		}
		log.Info("removing a stale socket left by an earlier run", "path", path)
		if err := os.Remove(path); err != nil {
			unlock()
			return nil, fmt.Errorf("remove the stale socket %s: %w", path, err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		unlock()
		return nil, fmt.Errorf("restrict the socket: %w", err)
	}
	return &peerListener{Listener: ln, uid: os.Getuid(), log: log, unlock: unlock}, nil
}

// peerListener drops connections from other users.
type peerListener struct {
	net.Listener
	uid    int
	log    *slog.Logger
	unlock func()
	once   sync.Once
}

// Close stops listening (removing the socket) and then releases the lock.
func (l *peerListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.unlock)
	return err
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		uid, err := peerUID(c)
		if err == nil && uid == l.uid {
			return c, nil
		}
		l.log.Warn("refused a connection from another user", "peer_uid", uid, "err", err)
		c.Close()
	}
}
