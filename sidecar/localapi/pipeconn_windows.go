//go:build windows

package localapi

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/windows"
)

// pipeConn is one connected instance of a named pipe, opened overlapped,
// as a net.Conn. Each Read and Write issues an overlapped operation and
// waits for it on its own event: blocking, like synchronous I/O, but a
// read may be pending while a write goes on (net/http's server keeps a
// background read pending while the handler writes). No I/O completion
// port: the sidecar must run under Wine too, where go-winio's hung.
type pipeConn struct {
	h    windows.Handle
	addr pipeAddr

	mu      sync.Mutex // orders ops.Add against closing
	ops     sync.WaitGroup
	closing atomic.Bool
	once    sync.Once

	rd, wd pipeDeadline
}

func newPipeConn(h windows.Handle, path string) *pipeConn {
	c := &pipeConn{h: h, addr: pipeAddr(path)}
	c.rd.h, c.wd.h = h, h
	return c
}

// begin registers an operation, or refuses it once Close has begun.
func (c *pipeConn) begin() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() {
		return false
	}
	c.ops.Add(1)
	return true
}

// do runs one overlapped operation under deadline d and waits for it.
func (c *pipeConn) do(d *pipeDeadline, op func(*windows.Overlapped) error) (int, error) {
	if !c.begin() {
		return 0, net.ErrClosed
	}
	defer c.ops.Done()
	ev, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return 0, err
	}
	defer windows.CloseHandle(ev)
	o := &windows.Overlapped{HEvent: ev}
	if !d.start(o) {
		return 0, os.ErrDeadlineExceeded
	}
	if err := op(o); err != nil && !errors.Is(err, windows.ERROR_IO_PENDING) {
		d.stop()
		return 0, err
	}
	// Close, or the deadline, may have cancelled what was pending before
	// this op was issued: cancel it here, or it could wait forever.
	if c.closing.Load() || d.expired() {
		_ = windows.CancelIoEx(c.h, o)
	}
	var n uint32
	err = windows.GetOverlappedResult(c.h, o, &n, true)
	expired := d.stop()
	if errors.Is(err, windows.ERROR_OPERATION_ABORTED) {
		switch {
		case c.closing.Load():
			err = net.ErrClosed
		case expired:
			err = os.ErrDeadlineExceeded
		}
	}
	return int(n), err
}

// Read reads from the pipe; io.EOF once the client closed its end.
func (c *pipeConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := c.do(&c.rd, func(o *windows.Overlapped) error {
		var done uint32
		return windows.ReadFile(c.h, b, &done, o)
	})
	switch {
	case errors.Is(err, windows.ERROR_BROKEN_PIPE), errors.Is(err, windows.ERROR_PIPE_NOT_CONNECTED):
		return n, io.EOF
	case errors.Is(err, windows.ERROR_MORE_DATA):
		return n, nil // message mode only; byte mode never says so
	case err != nil:
		return n, &net.OpError{Op: "read", Net: "pipe", Addr: c.addr, Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of b.
func (c *pipeConn) Write(b []byte) (int, error) {
	total := 0
	for total < len(b) {
		chunk := b[total:]
		n, err := c.do(&c.wd, func(o *windows.Overlapped) error {
			var done uint32
			return windows.WriteFile(c.h, chunk, &done, o)
		})
		total += n
		if err != nil {
			return total, &net.OpError{Op: "write", Net: "pipe", Addr: c.addr, Err: err}
		}
		if n == 0 {
			return total, &net.OpError{Op: "write", Net: "pipe", Addr: c.addr, Err: io.ErrShortWrite}
		}
	}
	return total, nil
}

// Close cancels pending reads and writes, waits for them to return, then
// closes the handle. Data already written stays readable by the client.
func (c *pipeConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.mu.Lock()
		c.closing.Store(true)
		c.mu.Unlock()
		_ = windows.CancelIoEx(c.h, nil)
		c.ops.Wait()
		err = windows.CloseHandle(c.h)
	})
	return err
}

func (c *pipeConn) LocalAddr() net.Addr  { return c.addr }
func (c *pipeConn) RemoteAddr() net.Addr { return c.addr }

// SetDeadline sets both deadlines. Deadlines matter to net/http: its
// server ends a background read with a read deadline in the past.
func (c *pipeConn) SetDeadline(t time.Time) error {
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *pipeConn) SetReadDeadline(t time.Time) error { c.rd.set(t); return nil }

// SetWriteDeadline sets the write deadline.
func (c *pipeConn) SetWriteDeadline(t time.Time) error { c.wd.set(t); return nil }

// pipeDeadline is one direction's deadline: when it passes, the pending
// operation is cancelled (CancelIoEx) and later ones fail at once.
type pipeDeadline struct {
	h       windows.Handle
	mu      sync.Mutex
	timer   *time.Timer
	passed  bool
	pending *windows.Overlapped
}

func (d *pipeDeadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.passed = false
	switch {
	case t.IsZero():
	case !t.After(time.Now()):
		d.expireLocked()
	default:
		d.timer = time.AfterFunc(time.Until(t), func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			d.expireLocked()
		})
	}
}

func (d *pipeDeadline) expireLocked() {
	d.passed = true
	if d.pending != nil {
		_ = windows.CancelIoEx(d.h, d.pending)
	}
}

// start records o as pending, or says the deadline has passed.
func (d *pipeDeadline) start(o *windows.Overlapped) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.passed {
		return false
	}
	d.pending = o
	return true
}

func (d *pipeDeadline) expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.passed
}

// stop forgets the pending operation and says whether the deadline passed.
func (d *pipeDeadline) stop() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.pending = nil
	return d.passed
}

var _ net.Conn = (*pipeConn)(nil)

// DialPipe connects to the local API's named pipe path (as ready announces
// it) for a Go client on Windows: the counterpart of dialing "unix" to the
// socket elsewhere, e.g. as an http.Transport's DialContext.
func DialPipe(ctx context.Context, path string) (net.Conn, error) {
	c, err := dialPipe(ctx, path)
	if err != nil {
		return nil, err // not a nil *pipeConn in a non-nil net.Conn
	}
	return c, nil
}

// dialPipe opens the named pipe path as a client (overlapped, like the
// server end). While every instance is taken (the server has not yet made
// the next one) the pipe is busy: it tries again for up to 2 s, as libuv
// does, or until ctx ends.
func dialPipe(ctx context.Context, path string) (*pipeConn, error) {
	name, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	giveUp := time.Now().Add(2 * time.Second)
	for {
		h, err := windows.CreateFile(name, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
			windows.OPEN_EXISTING, windows.FILE_FLAG_OVERLAPPED, 0)
		if err == nil {
			return newPipeConn(h, path), nil
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) || time.Now().After(giveUp) {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		select {
		case <-ctx.Done():
			return nil, &os.PathError{Op: "open", Path: path, Err: ctx.Err()}
		case <-time.After(10 * time.Millisecond):
		}
	}
}
