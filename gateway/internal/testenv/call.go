package testenv

import (
	"io"
	"net/http"
	"testing"

	"go.uber.org/goleak"
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
	return Do(t, req)
}

// Do sends req and returns the status and body.
func Do(t testing.TB, req *http.Request) (int, string) {
	t.Helper()
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

// HTTPLinger is the goleak option of packages whose servers refuse
// requests before reading them (431 over MaxHeaderBytes, 413 over the body
// limit): net/http then keeps the connection for 500 ms so that the client
// reads the answer (conn.closeWriteAndWait), even past Server.Close. It
// always ends by itself, so it is not a leak; without this option goleak
// reports it whenever such a test runs last.
var HTTPLinger = goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait")
