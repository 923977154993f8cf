package serve_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/serve"
)

// TestServeDrainsInFlightRequests: after the signal, the listener closes at
// once, but a request already running completes with its response.
func TestServeDrainsInFlightRequests(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		if r.Context().Err() != nil {
			t.Error("the signal cancelled the in-flight request's context")
		}
		_, _ = io.WriteString(w, "done")
	})
	ln, stop, served := startServing(t, h, 10*time.Second)

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-entered
	stop()
	// New connections are refused while the old request drains.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) before the in-flight request finished", err)
	default:
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request got %q, want done", body)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve = %v, want nil after a clean drain", err)
	}
}

// TestServeDrainTimeout: a request that outlives the drain is cut off and
// Serve reports it instead of hanging.
func TestServeDrainTimeout(t *testing.T) {
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // until the server closes the connection
	})
	ln, stop, served := startServing(t, h, 100*time.Millisecond)
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	stop()
	select {
	case err := <-served:
		if err == nil {
			t.Error("Serve = nil, want the drain timeout")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve hung past its drain timeout")
	}
}

// startServing runs serve.Serve on 127.0.0.1 and returns its listener, the "signal"
// (cancel), and the channel of Serve's result.
func startServing(t *testing.T, h http.Handler, drain time.Duration) (net.Listener, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	served := make(chan error, 1)
	go func() { served <- serve.Serve(ctx, serve.Server(h, log), ln, drain, log) }()
	return ln, stop, served
}
