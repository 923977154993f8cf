package session

import (
	"net/http"
	"testing"

	"github.com/signals-sorcery/sas/shared/wire"
)

// TestCheckPath: request paths are parsed, not cut. (A fragment once let
// "/v1/..#x" past the check.)
func TestCheckPath(t *testing.T) {
	for p, ok := range map[string]bool{
		"/v1/me":                    true,
		"/v1/usage?from=2026-11-01": true,
		"/v1/chat/completions":      true,
		"/v1/..#x":                  false,
		"/v1/me#fragment":           false,
		"/v1/../metrics":            false,
		"/v1/%2e%2e/healthz":        false,
		"/v1/..%2fhealthz":          false,
		"/v1/%5c..":                 false,
		// Escapes are case-insensitive (RFC 3986 §2.1): the upper-case and
		// mixed forms are refused as the lower-case ones are. Most of these
		// decode to no dot segment, so the escape check alone refuses them
		// (a case-sensitive one would let them through).
		"/v1/%2F..":                        false,
		"/v1/a%2Fb":                        false,
		"/v1/%2F":                          false,
		"/v1/..%5C":                        false,
		"/v1/%5C..":                        false,
		"/v1/a%2E":                         false,
		"/v1/%2E%2E/healthz":               false,
		"/v1/%2e%2E/healthz":               false,
		"/v1/a%2fb%2Fc":                    false,
		"/v1/..%5c%5C":                     false,
		`/v1/\..`:                          false, // a raw backslash: its escaped form is %5C
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
