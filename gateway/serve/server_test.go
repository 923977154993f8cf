package serve_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/gateway/serve"
)

// statusWithHeader sends GET url with one header of n bytes.
func statusWithHeader(t *testing.T, url string, n int) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Junk", strings.Repeat("j", n))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%d-byte header: %v", n, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestServerMaxHeaderBytes: the API server refuses a request whose headers
// pass MaxHeaderBytes with 431 before the handler runs (Go's default would
// take a megabyte), and serves one just under it.
func TestServerMaxHeaderBytes(t *testing.T) {
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = serve.Server(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), slog.New(slog.DiscardHandler))
	srv.Start()
	defer srv.Close()
	if got := statusWithHeader(t, srv.URL, serve.MaxHeaderBytes-1024); got != http.StatusOK {
		t.Errorf("header under the limit: status %d, want 200", got)
	}
	if got := statusWithHeader(t, srv.URL, 2*serve.MaxHeaderBytes); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("header over the limit: status %d, want 431", got)
	}
}

// TestPrivateMaxHeaderBytes: the metrics listener has the same bound.
func TestPrivateMaxHeaderBytes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve.Private(ctx, ln, metrics.New().PrivateHandler(), slog.New(slog.DiscardHandler))
	}()
	defer func() {
		cancel()
		<-done
	}()
	url := "http://" + ln.Addr().String() + "/metrics"
	if got := statusWithHeader(t, url, 1024); got != http.StatusOK {
		t.Errorf("small header: status %d, want 200", got)
	}
	if got := statusWithHeader(t, url, 2*serve.MaxHeaderBytes); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("header over the limit: status %d, want 431", got)
	}
	// Go's profiler is served here, for the operator over the private
	// network.
	pprof := "http://" + ln.Addr().String() + "/debug/pprof/heap?debug=1"
	if got := statusWithHeader(t, pprof, 16); got != http.StatusOK {
		t.Errorf("/debug/pprof/heap on the metrics listener: status %d, want 200", got)
	}
}
