//go:build windows

package localapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// PipePrefix starts every local named pipe's path.
const PipePrefix = `\\.\pipe\`

// pipeBuffer is the in and out buffer size of each pipe instance: a hint
// to the kernel, which grows it as needed.
const pipeBuffer = 64 << 10

// DefaultSocketPath is the named pipe \\.\pipe\sas-sidecar-<profile>-<SID>:
// pipes live in one namespace for the whole machine, so the user's SID in
// the name keeps two users' sidecars (fast user switching, a terminal
// server) from meeting; the DACL that Listen sets keeps them apart even if
// one guesses the other's name. getenv is unused (the signature is the one
// of the Unix socket's).
func DefaultSocketPath(_ func(string) string, profile string) (string, error) {
	sid, err := currentUserSID()
	if err != nil {
		return "", err
	}
	return PipePrefix + "sas-sidecar-" + profile + "-" + sid.String(), nil
}

// currentUserSID is the SID of the user this process runs as.
func currentUserSID() (*windows.SID, error) {
	var tok windows.Token
	err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_QUERY, &tok)
	if err != nil {
		return nil, fmt.Errorf("open the process token: %w", err)
	}
	defer tok.Close()
	u, err := tok.GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("read the process user: %w", err)
	}
	// The SID points into u's buffer: copy it out.
	return u.User.Sid.Copy()
}

// Listen creates the named pipe path as its first instance, with a DACL
// that grants the current user alone and remote clients rejected, and
// accepts connections on it. A name another process already holds is never
// shared: Listen fails with ErrInUse (without FILE_FLAG_FIRST_PIPE_INSTANCE
// an attacker who created the name first would receive the app's requests).
// log is unused: the DACL, not a per-connection check, keeps others out.
func Listen(path string, _ *slog.Logger) (net.Listener, error) {
	if !strings.HasPrefix(path, PipePrefix) || len(path) == len(PipePrefix) {
		return nil, fmt.Errorf("%s is not a named pipe path: want %s<name>", path, PipePrefix)
	}
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, fmt.Errorf("pipe name %q: %w", path, err)
	}
	sid, err := currentUserSID()
	if err != nil {
		return nil, err
	}
	// D:P — a protected DACL (nothing inherited), one ACE: generic all for
	// this user. No ACE for anyone else means nobody else may open the pipe
	// or create another instance of it.
	sd, err := windows.SecurityDescriptorFromString("D:P(A;;GA;;;" + sid.String() + ")")
	if err != nil {
		return nil, fmt.Errorf("pipe security descriptor: %w", err)
	}
	if pipeExists(name) {
		return nil, fmt.Errorf("%w on %s: quit it first, or use another --socket / --profile", ErrInUse, path)
	}
	l := &pipeListener{path: path, name: name}
	l.sa = &windows.SecurityAttributes{SecurityDescriptor: sd}
	l.sa.Length = uint32(unsafe.Sizeof(*l.sa))
	first, err := l.create(true)
	if err != nil {
		if errors.Is(err, windows.ERROR_ACCESS_DENIED) || errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, fmt.Errorf("%w on %s: quit it first, or use another --socket / --profile (%w)", ErrInUse, path, err)
		}
		return nil, fmt.Errorf("create the pipe %s: %w", path, err)
	}
	l.next = first
	if l.closeEv, err = windows.CreateEvent(nil, 1, 0, nil); err != nil {
		windows.CloseHandle(first)
		return nil, fmt.Errorf("create an event: %w", err)
	}
	return l, nil
}

// pipeExists says whether some process serves the pipe name. On Windows
// FILE_FLAG_FIRST_PIPE_INSTANCE alone refuses a held name, race-free; this
// probe (which may briefly connect to the holder) makes the refusal hold
// under Wine too, which ignores that flag.
func pipeExists(name *uint16) bool {
	h, err := windows.CreateFile(name, windows.GENERIC_READ, 0, nil, windows.OPEN_EXISTING, 0, 0)
	if err == nil {
		windows.CloseHandle(h)
		return true
	}
	// Busy: every instance has a client; denied: another user's pipe.
	return errors.Is(err, windows.ERROR_PIPE_BUSY) || errors.Is(err, windows.ERROR_ACCESS_DENIED)
}

// pipeListener accepts connections on a named pipe. There is always one
// instance waiting for the next client (next), made as soon as the last
// one is taken, so that the name is never left free for another process
// while the sidecar runs.
type pipeListener struct {
	path string
	name *uint16
	sa   *windows.SecurityAttributes

	mu      sync.Mutex
	next    windows.Handle // the instance waiting for a client, or 0
	closeEv windows.Handle // set by Close: wakes a waiting Accept
	waiting bool           // an Accept waits on next (it owns next and closeEv then)
	closed  bool
}

// create makes one instance of the pipe, overlapped so that a connection's
// reads and writes may overlap (on a synchronous handle Windows serializes
// them: net/http's background read would block the response forever).
func (l *pipeListener) create(first bool) (windows.Handle, error) {
	flags := uint32(windows.PIPE_ACCESS_DUPLEX | windows.FILE_FLAG_OVERLAPPED)
	if first {
		flags |= windows.FILE_FLAG_FIRST_PIPE_INSTANCE
	}
	mode := uint32(windows.PIPE_TYPE_BYTE | windows.PIPE_READMODE_BYTE | windows.PIPE_WAIT | windows.PIPE_REJECT_REMOTE_CLIENTS)
	return windows.CreateNamedPipe(l.name, flags, mode, windows.PIPE_UNLIMITED_INSTANCES, pipeBuffer, pipeBuffer, 0, l.sa)
}

// Accept waits for the next client. It must not be called concurrently
// (http.Server does not).
func (l *pipeListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		if l.waiting {
			l.mu.Unlock()
			return nil, errors.New("concurrent Accept on a pipe listener")
		}
		if l.next == 0 {
			h, err := l.create(false)
			if err != nil {
				l.mu.Unlock()
				return nil, fmt.Errorf("create a pipe instance: %w", err)
			}
			l.next = h
		}
		h, closeEv := l.next, l.closeEv
		l.waiting = true
		l.mu.Unlock()

		err := connectPipe(h, closeEv)

		l.mu.Lock()
		l.waiting = false
		l.next = 0
		if l.closed {
			windows.CloseHandle(h)
			windows.CloseHandle(l.closeEv)
			l.mu.Unlock()
			return nil, net.ErrClosed
		}
		switch {
		case errors.Is(err, windows.ERROR_NO_DATA):
			// The client came and went before we saw it: reuse the
			// instance, so the name stays held.
			_ = windows.DisconnectNamedPipe(h)
			l.next = h
			l.mu.Unlock()
			continue
		case err != nil:
			windows.CloseHandle(h)
			l.mu.Unlock()
			return nil, fmt.Errorf("connect the pipe %s: %w", l.path, err)
		}
		// The next instance now, before this one is handed on; if that
		// fails the next Accept tries again.
		if n, err := l.create(false); err == nil {
			l.next = n
		}
		l.mu.Unlock()
		return newPipeConn(h, l.path), nil
	}
}

// connectPipe waits for a client on h, or for closeEv.
func connectPipe(h, closeEv windows.Handle) error {
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(ev)
	o := &windows.Overlapped{HEvent: ev}
	switch err := windows.ConnectNamedPipe(h, o); {
	case errors.Is(err, windows.ERROR_PIPE_CONNECTED):
		return nil // connected between CreateNamedPipe and now
	case err != nil && !errors.Is(err, windows.ERROR_IO_PENDING):
		return err
	}
	which, err := windows.WaitForMultipleObjects([]windows.Handle{ev, closeEv}, false, windows.INFINITE)
	if err != nil {
		_ = windows.CancelIoEx(h, o)
	} else if which == windows.WAIT_OBJECT_0+1 {
		_ = windows.CancelIoEx(h, o) // Close: the caller sees closed
	}
	var n uint32
	// Waits for the (possibly cancelled) operation to finish with o.
	return windows.GetOverlappedResult(h, o, &n, true)
}

// Close stops accepting; a waiting Accept returns net.ErrClosed at once.
// Connections already accepted stay open (http.Server closes them).
func (l *pipeListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.waiting {
		// Accept owns next and closeEv: it closes both when it wakes.
		return windows.SetEvent(l.closeEv)
	}
	if l.next != 0 {
		windows.CloseHandle(l.next)
		l.next = 0
	}
	return windows.CloseHandle(l.closeEv)
}

// Addr is the pipe's path.
func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.path) }

// pipeAddr is a named pipe's path as a net.Addr.
type pipeAddr string

func (pipeAddr) Network() string  { return "pipe" }
func (a pipeAddr) String() string { return string(a) }
