package rpc_test

import (
	"encoding/json"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/rpc"
)

func TestParseLine(t *testing.T) {
	for line, want := range map[string]int{
		`{"jsonrpc":"2.0","id":1,"method":"status"}`:              0,
		`{"jsonrpc":"2.0","id":"a","method":"login","params":{}}`: 0,
		`{"jsonrpc":"2.0","method":"status"}`:                     0, // a notification
		`{"jsonrpc":"2.0","id":null,"method":"status"}`:           0,
		`not json`: rpc.CodeParseError,
		`{"jsonrpc":"2.0","id":1,"method":"status"`:               rpc.CodeParseError,
		`[{"jsonrpc":"2.0","id":1,"method":"status"}]`:            rpc.CodeInvalidRequest,
		`{"jsonrpc":"1.0","id":1,"method":"status"}`:              rpc.CodeInvalidRequest,
		`{"id":1,"method":"status"}`:                              rpc.CodeInvalidRequest,
		`{"jsonrpc":"2.0","id":1}`:                                rpc.CodeInvalidRequest,
		`{"jsonrpc":"2.0","id":1,"method":""}`:                    rpc.CodeInvalidRequest,
		`{"jsonrpc":"2.0","id":1,"method":7}`:                     rpc.CodeInvalidRequest,
		`{"jsonrpc":"2.0","id":{},"method":"status"}`:             rpc.CodeInvalidRequest,
		`{"jsonrpc":"2.0","id":1,"method":"status","params":"x"}`: rpc.CodeInvalidRequest,
		`"just a string"`:                                         rpc.CodeInvalidRequest,
		`null`:                                                    rpc.CodeInvalidRequest,
	} {
		_, e := rpc.ParseLine([]byte(line))
		got := 0
		if e != nil {
			got = e.Code
		}
		if got != want {
			t.Errorf("%s → %d, want %d", line, got, want)
		}
	}
}

// FuzzParseLine: no line crashes the parser, and what it accepts is a
// request with a method and an id that can be echoed.
func FuzzParseLine(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"status"}`,
		`{"jsonrpc":"2.0","id":"x","method":"request","params":{"path":"/v1/me","body":{"a":[1,2]}}}`,
		`{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":3}}`,
		`[1,2,3]`, `{`, `null`, `{"jsonrpc":"2.0","id":1e400,"method":"x"}`, "\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		req, e := rpc.ParseLine(line)
		if e != nil {
			if e.Code >= 0 || e.Message == "" {
				t.Fatalf("bad error object %+v", e)
			}
			return
		}
		if req.Method == "" {
			t.Fatal("accepted a request without a method")
		}
		if req.ID != nil && !json.Valid(req.ID) {
			t.Fatalf("accepted an id that cannot be echoed: %q", req.ID)
		}
	})
}
