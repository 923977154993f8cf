package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/signals-sorcery/sas/shared/wire"
)

// writeJSON writes v as the JSON body of a response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the contract's error envelope. The status comes
// from the code (wire.HTTPStatus, the one mapping); the client sees only the
// *wire.Error's message, and causes of 5xx answers go to the log with the
// request id. Errors that are not *wire.Error are internal by definition.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := errors.AsType[*wire.Error](err)
	if !ok {
		e = &wire.Error{Code: wire.CodeInternal, Message: "Internal error.", Err: err}
	}
	status := wire.HTTPStatus(e.Code)
	if se, ok := errors.AsType[interface {
		error
		Status() int
	}](err); ok {
		status = se.Status() // e.g. OpenAI's 404/422 relayed as bad_request
	}
	log := s.logger(r)
	switch {
	case errors.Is(r.Context().Err(), context.Canceled):
		// The client went away: whatever failed, nobody reads the answer,
		// and it is not the gateway's or a dependency's failure (no error
		// log, no error report). 499 is nginx's "client closed request",
		// for the access log and metrics.
		log.Info("client went away before the answer", "err", err)
		status = StatusClientClosedRequest
	case status >= 500:
		log.Error("request failed", "code", e.Code, "err", err)
		// Outages page through metrics, not one event per request; panics
		// were reported where they were recovered.
		if e.Code != wire.CodeUnavailable && e.Reason != "panic" {
			s.errors.Report(err, RequestID(r.Context()), userFrom(r.Context()).ClerkUserID, false)
		}
	case e.Err != nil:
		// Client errors with a cause (why a token failed, …) are useful
		// when debugging and noise otherwise.
		log.Debug("request refused", "code", e.Code, "reason", e.Err.Error())
	}
	h := w.Header()
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	switch e.Code {
	case wire.CodeMissingToken:
		h.Set("WWW-Authenticate", `Bearer realm="sas"`)
	case wire.CodeInvalidToken:
		h.Set("WWW-Authenticate", `Bearer realm="sas", error="invalid_token"`)
	}
	writeJSON(w, status, wire.ErrorBody{Error: wire.ErrorDetail{Code: e.Code, Message: e.Message, Limit: e.Limit}})
}

// StatusClientClosedRequest is the status logged for a request whose
// client left before the answer (nginx's 499; never sent).
const StatusClientClosedRequest = 499

// logger returns the request's logger (with its request id).
func (s *Server) logger(r *http.Request) *slog.Logger {
	return s.log.With("request_id", RequestID(r.Context()))
}
