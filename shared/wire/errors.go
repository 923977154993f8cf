// Package wire holds the JSON shapes and error codes that the gateway, the
// sidecar and their clients exchange. It imports neither program, so both can
// depend on it without depending on each other.
package wire

import (
	"errors"
	"fmt"
	"net/http"
)

// Error codes (README.md, "API" and "The desktop daemon"). A code is
// part of the public API: clients switch on it, so codes are never renamed.
const (
	CodeBadRequest       = "bad_request"
	CodeMissingToken     = "missing_token"
	CodeInvalidToken     = "invalid_token"
	CodeAccountSuspended = "account_suspended"
	CodeAccountDeleted   = "account_deleted"
	CodeModelNotAllowed  = "model_not_allowed"
	// CodeTemplatesOnly: the caller's plan runs server prompt templates
	// only (POST /v1/templates/{name}), not raw requests.
	CodeTemplatesOnly     = "templates_only"
	CodeNotFound          = "not_found"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeConflict          = "conflict"
	CodePayloadTooLarge   = "payload_too_large"
	CodeRateLimited       = "rate_limited"
	CodeQuotaExceeded     = "quota_exceeded"
	CodeTooManyConcurrent = "too_many_concurrent"
	CodePromptTooLarge    = "prompt_too_large"
	CodeInternal          = "internal_error"
	CodeUpstreamError     = "upstream_error"
	// CodeUpstreamUnavailable: every upstream of the model is out of
	// rotation (cooling after a 429, circuit open), so none was tried.
	CodeUpstreamUnavailable = "upstream_unavailable"
	CodeUnavailable         = "unavailable"
	// Sidecar-only codes.
	CodeNotSignedIn        = "not_signed_in"
	CodeGatewayUnreachable = "gateway_unreachable"
	CodeForbidden          = "forbidden" // a request from a browser context
	// CodeCancelled: the caller cancelled the call (stdio $/cancelRequest,
	// the app closing), not an HTTP status of its own.
	CodeCancelled = "cancelled"
	// CodeResponseTooLarge: a gateway answer too large to return over stdio.
	CodeResponseTooLarge = "response_too_large"
	// CodeSignInFailed: a sign-in ended without a session (refused at the
	// provider, timed out, a token that failed verification).
	CodeSignInFailed = "sign_in_failed"
)

// HTTPStatus maps an error code to its HTTP status. It is the only place
// where that mapping lives; unknown codes are internal errors.
func HTTPStatus(code string) int {
	switch code {
	case CodeBadRequest, CodePromptTooLarge:
		return http.StatusBadRequest
	case CodeMissingToken, CodeInvalidToken, CodeNotSignedIn, CodeSignInFailed:
		return http.StatusUnauthorized
	case CodeAccountSuspended, CodeAccountDeleted, CodeModelNotAllowed, CodeTemplatesOnly, CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict:
		return http.StatusConflict
	case CodePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited, CodeQuotaExceeded, CodeTooManyConcurrent:
		return http.StatusTooManyRequests
	case CodeCancelled:
		return 499 // nginx's "client closed request": nobody reads it
	case CodeUpstreamError, CodeGatewayUnreachable, CodeResponseTooLarge:
		return http.StatusBadGateway
	case CodeUnavailable, CodeUpstreamUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Error is the one application error type. Message is shown to the client
// and must never contain a token, key or internal detail; Err is the internal
// cause, which is logged (when the code is internal or unavailable) and never
// sent.
type Error struct {
	Code    string
	Message string
	// RetryAfter, when positive, becomes the Retry-After header in seconds.
	RetryAfter int
	// Limit names the plan limit that refused the request (quota codes and
	// prompt_too_large); it is sent as error.limit.
	Limit string
	// Reason is a short internal label (e.g. "expired") for metrics and
	// logs; never shown to the client.
	Reason string
	Err    error
}

// Errorf builds an *Error with a formatted client message and no cause.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error that keeps err as its internal cause.
func Wrap(code, message string, err error) *Error {
	return &Error{Code: code, Message: message, Err: err}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the contract code of err: the code of the first *Error in
// its chain, else CodeInternal.
func ErrorCode(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the client message of err: the message of the
// first *Error in its chain, else a generic sentence (an error that is not
// an *Error is internal, and its text is not for clients).
func ErrorMessage(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	return "Internal error."
}

// ErrorBody is the envelope of every non-2xx answer:
// {"error":{"code":"…","message":"…"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Limit names the limit that refused the request, for quota_exceeded,
	// rate_limited, too_many_concurrent and prompt_too_large.
	Limit string `json:"limit,omitempty"`
}
