//go:build windows

package localapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var pipeSeq atomic.Int64

// testPipe is a pipe name of this test run alone.
func testPipe(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf(`%ssas-test-%d-%d-%d`, PipePrefix, os.Getpid(), time.Now().UnixNano(), pipeSeq.Add(1))
}

func listenPipe(t *testing.T, path string) net.Listener {
	t.Helper()
	ln, err := Listen(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestDefaultPipePath(t *testing.T) {
	p, err := DefaultSocketPath(nil, "work")
	if err != nil {
		t.Fatal(err)
	}
	if want := PipePrefix + "sas-sidecar-work-S-1-"; !strings.HasPrefix(p, want) {
		t.Errorf("DefaultSocketPath = %q, want %q<the user's SID>", p, want)
	}
}

// TestPipeServesHTTP: the one HTTP server answers over the pipe — several
// requests on one kept-alive connection, a request body, a streamed answer
// — and shuts down within the contract's 2 s.
func TestPipeServesHTTP(t *testing.T) {
	path := testPipe(t)
	ln := listenPipe(t, path)
	if got := ln.Addr().String(); got != path {
		t.Errorf("Addr = %q, want %q", got, path)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %s|", r.Method, r.URL.Path, body)
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "done")
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	dials := atomic.Int64{}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		return DialPipe(ctx, path)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i, want := range []string{"GET /sidecar/status |done", "POST /v1/echo hello|done", "GET /v1/me |done"} {
		method, body := http.MethodGet, io.Reader(nil)
		if strings.HasPrefix(want, "POST") {
			method, body = http.MethodPost, strings.NewReader("hello")
		}
		target := strings.Fields(want)[1]
		req, _ := http.NewRequest(method, "http://sas"+target, body)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(got) != want {
			t.Errorf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d connections for 3 requests, want 1 kept alive", n)
	}
	tr.CloseIdleConnections()

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve = %v, want ErrServerClosed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v, want under 2 s", d)
	}
}

// pipePair dials path and returns both ends of the connection ln
// accepts; both are closed when t ends.
func pipePair(t *testing.T, ln net.Listener, path string) (client, server net.Conn) {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	client, err := dialPipe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server = <-accepted
	if server == nil {
		t.Fatal("Accept failed")
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// TestPipeFirstInstance: a name already held — by another sidecar, or by
// whoever created it first — is refused, never shared, also while the
// holder has clients connected; once the holder closes, it is free again.
func TestPipeFirstInstance(t *testing.T) {
	path := testPipe(t)
	ln := listenPipe(t, path)
	if _, err := Listen(path, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen: %v, want ErrInUse", err)
	}

	client, server := pipePair(t, ln, path)
	if _, err := Listen(path, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrInUse) {
		t.Fatalf("Listen while a client is connected: %v, want ErrInUse", err)
	}

	ln.Close()
	server.Close()
	client.Close()
	ln2, err := Listen(path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Listen after the holder closed: %v", err)
	}
	ln2.Close()
}

// TestPipeCloseUnblocksAccept: Close wakes an Accept waiting for a client.
func TestPipeCloseUnblocksAccept(t *testing.T) {
	ln := listenPipe(t, testPipe(t))
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // let Accept wait
	if err := ln.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting 2 s after Close")
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
}

// TestPipeConnUnblocks: a pending read returns when its deadline passes
// (net/http's server ends its background read so) and when the connection
// is closed; a write does not wait for a pending read.
func TestPipeConnUnblocks(t *testing.T) {
	path := testPipe(t)
	ln := listenPipe(t, path)
	client, server := pipePair(t, ln, path)

	read := func() chan error {
		ch := make(chan error, 1)
		go func() {
			_, err := server.Read(make([]byte, 16))
			ch <- err
		}()
		time.Sleep(100 * time.Millisecond) // let the read be pending
		return ch
	}
	wait := func(ch chan error, what string) error {
		t.Helper()
		select {
		case err := <-ch:
			return err
		case <-time.After(2 * time.Second):
			t.Fatalf("%s: the read still waits after 2 s", what)
			return nil
		}
	}

	pending := read()
	// A write while the read is pending (the server answering while
	// net/http's background read waits).
	if _, err := server.Write([]byte("answer")); err != nil {
		t.Fatalf("write while a read is pending: %v", err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "answer" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	_ = server.SetReadDeadline(time.Now())
	var ne net.Error
	if err := wait(pending, "deadline"); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("read after the deadline passed = %v, want a timeout", err)
	}
	_ = server.SetReadDeadline(time.Time{})

	pending = read()
	server.Close()
	if err := wait(pending, "close"); err == nil {
		t.Error("read on a closed connection succeeded")
	}
	if _, err := client.Read(buf); err != io.EOF {
		t.Errorf("client read after the server closed = %v, want EOF", err)
	}
}
