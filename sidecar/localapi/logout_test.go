package localapi_test

import (
	"strings"
	"testing"
)

// TestLogoutRoute: POST /sidecar/logout signs out (status says so, and a
// gateway call is then not_signed_in), and answers the status JSON.
func TestLogoutRoute(t *testing.T) {
	a := newAPI(t)
	if r := a.do(t, "POST", "/sidecar/logout", nil, ""); r.status != 200 || !strings.Contains(r.body, `"signedIn":false`) {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if r := a.do(t, "GET", "/sidecar/status", nil, ""); !strings.Contains(r.body, `"signedIn":false`) {
		t.Errorf("status after logout: %s", r.body)
	}
	if r := a.do(t, "GET", "/v1/me", nil, ""); r.status != 401 || !strings.Contains(r.body, `"not_signed_in"`) {
		t.Errorf("/v1/me after logout: %d %s", r.status, r.body)
	}
}
