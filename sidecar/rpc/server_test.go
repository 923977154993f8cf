package rpc_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/daemon"
	"github.com/signals-sorcery/sas/sidecar/internal/e2etest"
	"github.com/signals-sorcery/sas/sidecar/internal/stacktest"
	"github.com/signals-sorcery/sas/sidecar/rpc"
)

// TestRequestParams: the stdio request's params are checked before
// anything is sent: a bad path or header is -32602 with a sentence, never
// a Go error's text; a gateway call with nobody signed in is the gateway's
// shape (status 401, not_signed_in).
func TestRequestParams(t *testing.T) {
	stack := stacktest.Start(t)
	settings := stack.Settings(t)
	logs := &e2etest.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	d := daemon.New(daemon.Options{Session: stack.Session(t, settings, nil), WatchInterval: -1, Logger: log})
	defer d.Close()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := rpc.NewServer(d, outW, log)
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), inR) }()
	out := bufio.NewScanner(outR)
	id := 0
	call := func(params string) map[string]any {
		t.Helper()
		id++
		if _, err := fmt.Fprintf(inW, `{"jsonrpc":"2.0","id":%d,"method":"request","params":%s}`+"\n", id, params); err != nil {
			t.Fatal(err)
		}
		if !out.Scan() {
			t.Fatal("no answer")
		}
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, params := range []string{
		`{"path":"/metrics"}`,
		`{"path":"/v1/me#x"}`,
		`{"path":"http://evil.example/v1/me"}`,
		`{"path":"/v1/me","headers":{"Bad Name":"x"}}`,
		`{"path":"/v1/me","headers":{"X-Ok":"line\r\nbreak"}}`,
		`{"path":"/v1/me","method":"GET POST"}`,
		`{"path":"/v1/me","headers":{"X-Number":7}}`,
		`{"path":"/v1/me","unknown":true}`,
	} {
		e, _ := call(params)["error"].(map[string]any)
		if e == nil || e["code"] != float64(rpc.CodeInvalidParams) {
			t.Errorf("%s: %v, want -32602", params, e)
			continue
		}
		for _, leak := range []string{"json:", "net/http", "parse "} {
			if strings.Contains(e["message"].(string), leak) {
				t.Errorf("%s: Go error text in %q", params, e["message"])
			}
		}
	}
	r, _ := call(`{"path":"/v1/me"}`)["result"].(map[string]any)
	if r["status"] != float64(401) || !strings.Contains(mustJSON(r["body"]), `"not_signed_in"`) {
		t.Errorf("not signed in: %v", r)
	}
	inW.Close()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	outW.Close()
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
