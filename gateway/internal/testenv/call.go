package testenv

import (
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Call sends a bodiless request to url with token as its bearer (none when
// empty) and returns the status and body.
func Call(t testing.TB, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// WaitRefusedConnections waits for the connections a server refused with
// 431 (headers over MaxHeaderBytes) to end: net/http keeps each for 500 ms
// after answering, so that the client reads the answer, even past
// Server.Close, and goleak would report them.
func WaitRefusedConnections(t testing.TB) {
	t.Helper()
	WaitFor(t, "end of the refused connections", 5*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "closeWriteAndWait")
	})
}
