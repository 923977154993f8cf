package wire_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/signals-sorcery/sas/shared/wire"
)

// TestHTTPStatus pins the contract's code → status table.
func TestHTTPStatus(t *testing.T) {
	for code, want := range map[string]int{
		wire.CodeBadRequest:         400,
		wire.CodeMissingToken:       401,
		wire.CodeInvalidToken:       401,
		wire.CodeNotSignedIn:        401,
		wire.CodeSignInFailed:       401,
		wire.CodeAccountSuspended:   403,
		wire.CodeAccountDeleted:     403,
		wire.CodeModelNotAllowed:    403,
		wire.CodeForbidden:          403,
		wire.CodeNotFound:           404,
		wire.CodeMethodNotAllowed:   405,
		wire.CodeConflict:           409,
		wire.CodePayloadTooLarge:    413,
		wire.CodeRateLimited:        429,
		wire.CodeQuotaExceeded:      429,
		wire.CodeTooManyConcurrent:  429,
		wire.CodeCancelled:          499,
		wire.CodeResponseTooLarge:   502,
		wire.CodePromptTooLarge:     400,
		wire.CodeInternal:           500,
		wire.CodeUpstreamError:      502,
		wire.CodeGatewayUnreachable: 502,
		wire.CodeUnavailable:        503,
		"something_new":             http.StatusInternalServerError,
	} {
		if got := wire.HTTPStatus(code); got != want {
			t.Errorf("HTTPStatus(%q) = %d, want %d", code, got, want)
		}
	}
}

func TestErrorCodeThroughWrapping(t *testing.T) {
	cause := errors.New("dial tcp: connection refused")
	err := fmt.Errorf("load user: %w", wire.Wrap(wire.CodeUnavailable, "The database is unavailable.", cause))
	if got := wire.ErrorCode(err); got != wire.CodeUnavailable {
		t.Errorf("ErrorCode = %q", got)
	}
	if !errors.Is(err, cause) {
		t.Error("cause lost through Unwrap")
	}
	if got := wire.ErrorCode(errors.New("plain")); got != wire.CodeInternal {
		t.Errorf("ErrorCode(plain) = %q, want internal_error", got)
	}
}
