package localapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/daemon"
	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
	"github.com/signals-sorcery/sas/sidecar/localapi"
	"github.com/signals-sorcery/sas/sidecar/session"
)

// api is the local API of a signed-in daemon on the in-process dev stack,
// served over HTTP for the test (the socket's own guards are tested in
// localapi_test.go); upstream sits between the daemon and the gateway.
type api struct {
	url  string
	logs *e2etest.Buffer
	// cut, when set, breaks gateway answers to paths with this suffix after
	// their first read.
	cut atomic.Value
	// upstreamCancelled counts gateway calls whose context ended early.
	upstreamCancelled atomic.Int64
	// query is the last raw query the gateway was sent.
	query atomic.Value
	// slowCalls counts calls to /v1/slow, which answers nothing until its
	// call is cancelled.
	slowCalls atomic.Int64
	// active counts the requests the local API is handling.
	active atomic.Int64
}

func newAPI(t *testing.T) *api {
	t.Helper()
	a := &api{logs: &e2etest.Buffer{}}
	a.cut.Store("")
	stack := stacktest.Start(t)
	settings := stack.Settings(t)
	browser := stacktest.NewBrowser()
	log := slog.New(slog.NewJSONHandler(a.logs, nil))
	d := daemon.New(daemon.Options{
		Session: stack.Session(t, settings, nil), Browser: browser, WatchInterval: -1, Logger: log,
		Upstream: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			a.query.Store(r.URL.RawQuery)
			if r.URL.Path == "/v1/slow" {
				a.slowCalls.Add(1)
				<-r.Context().Done()
				a.upstreamCancelled.Add(1)
				return nil, r.Context().Err()
			}
			resp, err := http.DefaultTransport.RoundTrip(r)
			if err != nil {
				if r.Context().Err() != nil {
					a.upstreamCancelled.Add(1)
				}
				return nil, err
			}
			resp.Body = &watchedBody{ReadCloser: resp.Body, ctx: r.Context(), a: a, cut: a.cut.Load().(string) != "" && strings.HasSuffix(r.URL.Path, a.cut.Load().(string))}
			return resp, nil
		}),
	})
	h := localapi.Handler(d, log)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.active.Add(1)
		defer a.active.Add(-1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.Close()
		d.Close()
		browser.Wait()
	})
	a.url = srv.URL
	if r := a.do(t, "POST", "/sidecar/login", nil, ""); r.status != 200 || !strings.Contains(r.body, `"signedIn":true`) {
		t.Fatalf("sign-in: %d %s", r.status, r.body)
	}
	return a
}

// watchedBody is a gateway answer: cut after its first read when asked,
// and counted when its request is cancelled while it is read.
type watchedBody struct {
	io.ReadCloser
	ctx   context.Context
	a     *api
	cut   bool
	reads int
}

func (b *watchedBody) Read(p []byte) (int, error) {
	if b.cut && b.reads > 0 {
		return 0, errors.New("connection reset by the test")
	}
	b.reads++
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.ctx.Err() != nil {
		b.a.upstreamCancelled.Add(1)
	}
	return n, err
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (a *api) do(t *testing.T, method, path string, header http.Header, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if h := header.Get("Host"); h != "" {
		req.Host = h // the client sends req.Host, not a Host header
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

const streamBody = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}`

// TestProxyStreams: a streamed completion is relayed as it arrives (several
// reads, each event flushed), not buffered to the end.
func TestProxyStreams(t *testing.T) {
	a := newAPI(t)
	resp, err := http.Post(a.url+"/v1/chat/completions", "application/json", strings.NewReader(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	reads, all := 0, &bytes.Buffer{}
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			reads++
			all.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	if reads < 3 || !strings.HasSuffix(all.String(), "data: [DONE]\n\n") {
		t.Errorf("%d reads; stream ends %q", reads, all.String()[max(0, all.Len()-40):])
	}
}

// TestBrokenAnswerResetsTheConnection: a gateway answer that breaks off
// mid-stream is not passed on as a complete one: the client's read fails.
func TestBrokenAnswerResetsTheConnection(t *testing.T) {
	a := newAPI(t)
	a.cut.Store("/chat/completions")
	resp, err := http.Post(a.url+"/v1/chat/completions", "application/json", strings.NewReader(streamBody))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil || strings.Contains(string(b), "[DONE]") {
		t.Errorf("a cut answer read to a clean end (%d bytes, err %v)", len(b), err)
	}
}

// TestClientLeavingCancelsTheGatewayCall: closing the connection mid-stream
// cancels the call to the gateway (and so to OpenAI).
func TestClientLeavingCancelsTheGatewayCall(t *testing.T) {
	a := newAPI(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", a.url+"/v1/chat/completions", strings.NewReader(streamBody))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = resp.Body.Read(make([]byte, 16))
	cancel()
	resp.Body.Close()
	e2etest.WaitFor(t, "the gateway call to be cancelled", func() bool { return a.upstreamCancelled.Load() > 0 })
	if strings.Contains(a.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client that left is logged as an error:\n%s", a.logs)
	}
}

// TestClientLeavingBeforeTheAnswer: a client that leaves before the
// gateway answers cancels the call, and nothing is logged as an error.
func TestClientLeavingBeforeTheAnswer(t *testing.T) {
	a := newAPI(t)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", a.url+"/v1/slow", nil)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	e2etest.WaitFor(t, "the call to reach the gateway", func() bool { return a.slowCalls.Load() > 0 })
	cancel()
	if err := <-done; err == nil {
		t.Error("the cancelled call was answered")
	}
	e2etest.WaitFor(t, "the gateway call to be cancelled", func() bool { return a.upstreamCancelled.Load() > 0 })
	e2etest.WaitFor(t, "the handler to end", func() bool { return a.active.Load() == 0 })
	if strings.Contains(a.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client that left is logged as an error:\n%s", a.logs)
	}
}

// TestQueryPassesAsWritten: the query reaches the gateway as the client
// wrote it, parameters Go cannot parse included.
func TestQueryPassesAsWritten(t *testing.T) {
	a := newAPI(t)
	const q = "a=1;b=2&c=%zz&d=4"
	if r := a.do(t, "GET", "/v1/me?"+q, nil, ""); r.status != 200 {
		t.Fatalf("/v1/me?%s: %d %s", q, r.status, r.body)
	}
	if got := a.query.Load(); got != q {
		t.Errorf("the gateway was sent ?%v, want ?%s", got, q)
	}
}

// TestLocalAPIErrors: every refusal is the contract's JSON envelope with a
// code and a human message, never a Go error's text.
func TestLocalAPIErrors(t *testing.T) {
	a := newAPI(t)
	for _, c := range []struct {
		method, path string
		header       http.Header
		body         string
		status       int
		code         string
	}{
		{"GET", "/v1/me", http.Header{"Origin": {"https://evil.example"}}, "", 403, "forbidden"},
		{"GET", "/v1/me", http.Header{"Referer": {"https://evil.example/x"}}, "", 403, "forbidden"},
		{"GET", "/v1/me", http.Header{"Host": {"evil.example"}}, "", 403, "forbidden"},
		{"GET", "/v1/me", http.Header{"Host": {"evil.example:43110"}}, "", 403, "forbidden"},
		{"GET", "/v1/me", http.Header{"Host": {"sas.evil.example"}}, "", 403, "forbidden"},
		{"GET", "/metrics", nil, "", 404, "not_found"},
		{"POST", "/v1/chat/completions", nil, strings.Repeat("a", session.MaxBodyBytes+1), 413, "payload_too_large"},
		{"POST", "/v1/chat/completions?x=%2e%2e", nil, "{}", 0, ""}, // a query is not a path: passed on
		{"GET", "/v1/%2e%2e/healthz", nil, "", 400, "bad_request"},
		{"POST", "/sidecar/login", nil, `{"redirect":"carrier-pigeon"}`, 400, "bad_request"},
		{"POST", "/sidecar/login", nil, `{"unknown":1}`, 400, "bad_request"},
		{"POST", "/sidecar/completeLogin", nil, `{}`, 400, "bad_request"},
		{"POST", "/sidecar/completeLogin", nil, `{"url":"sas://callback?code=x&state=y"}`, 400, "bad_request"},
	} {
		r := a.do(t, c.method, c.path, c.header, c.body)
		if c.status == 0 {
			if strings.Contains(r.body, `"code":"bad_request"`) && strings.Contains(r.body, "/v1/") {
				t.Errorf("%s %s: the query was taken for the path: %s", c.method, c.path, r.body)
			}
			continue
		}
		if r.status != c.status || !strings.Contains(r.body, `"code":"`+c.code+`"`) || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %s, want %d %s", c.method, c.path, r.status, r.body, c.status, c.code)
		}
		for _, leak := range []string{"json:", "http:", "dial ", "EOF", "goroutine"} {
			if strings.Contains(r.body, leak) {
				t.Errorf("%s %s: Go error text in %s", c.method, c.path, r.body)
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
