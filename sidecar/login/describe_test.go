package login_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/signals-sorcery/sas/sidecar/login"
)

// TestDescribeOtherErrors: an error that is not the token endpoint's
// answer (a network failure, a cancelled context) is described as it is.
func TestDescribeOtherErrors(t *testing.T) {
	err := errors.New("dial tcp 127.0.0.1:1: connection refused")
	if got := login.Describe(err); got != err {
		t.Errorf("Describe(%v) = %v, want it unchanged", err, got)
	}
}

// TestLoginUserinfoForAMissingEmail: an ID token with a name but no email
// sends the flow to userinfo for the email too.
func TestLoginUserinfoForAMissingEmail(t *testing.T) {
	var p provider
	p = newProvider(t, true, func(h http.Handler) http.Handler {
		return rewriteJSON("/oauth/token", resign(&p, func(c map[string]any) { delete(c, "email") }))(h)
	})
	res, err := login.Run(context.Background(), options(t, p, follow(t, make(chan string, 1))))
	if err != nil {
		t.Fatal(err)
	}
	if res.Identity.Email != "dev@example.com" {
		t.Errorf("identity = %+v, want the userinfo's email", res.Identity)
	}
}
