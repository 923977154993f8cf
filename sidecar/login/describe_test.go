package login_test

import (
	"errors"
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
