package daemon

import (
	"net/http"
	"testing"

	"github.com/signals-sorcery/sas/shared/wire"
)

// TestCheckPath: request paths are parsed, not cut. (A fragment once let
// "/v1/..#x" past the check.)
func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/v1/me":                           true,
		"/v1/usage?from=2026-11-01":        true,
		"/v1/chat/completions":             true,
		"/v1/..#x":                         false,
		"/v1/me#fragment":                  false,
		"/v1/../metrics":                   false,
		"/v1/%2e%2e/healthz":               false,
		"/v1/..%2fhealthz":                 false,
		"/v1/%5c..":                        false,
		"/v1//me":                          false,
		"/v1/./me":                         false,
		"/v2/me":                           false,
		"/v1":                              false,
		"v1/me":                            false,
		"http://evil.example/v1/me":        false,
		"//evil.example/v1/me":             false,
		"https://user:pw@evil.example/v1/": false,
		"":                                 false,
	} {
		err := checkPath(http.MethodGet, p)
		if (err == nil) != ok || (err != nil && wire.ErrorCode(err) != wire.CodeBadRequest) {
			t.Errorf("checkPath(%q) = %v, want ok=%v", p, err, ok)
		}
	}
	for _, m := range []string{http.MethodConnect, http.MethodTrace} {
		if checkPath(m, "/v1/me") == nil {
			t.Errorf("%s accepted", m)
		}
	}
}
