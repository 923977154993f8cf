// Package errreport sends the gateway's panics and 5xx answers to Sentry
// when SENTRY_DSN is set, tagged with the request id and the Clerk user id
// (never a token, header or body). Without a DSN, New returns nil and every
// method is a no-op: no client, no goroutine, no cost.
package errreport

import (
	"fmt"
	"net/http"
	"time"

	"github.com/getsentry/sentry-go"
)

// Reporter sends events to Sentry.
type Reporter struct {
	hub *sentry.Hub
}

// New returns a Reporter for dsn, or nil when dsn is empty. release is the
// build version.
func New(dsn, release string, transport http.RoundTripper) (*Reporter, error) {
	if dsn == "" {
		return nil, nil
	}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:           dsn,
		Release:       release,
		HTTPTransport: transport,
		// The classic transport: its Flush waits for queued events, which
		// the newer telemetry buffer did not always do (events were lost at
		// shutdown in our tests).
		DisableTelemetryBuffer: true,
		// Requests are not attached: their headers carry bearer tokens.
		SendDefaultPII: false,
		BeforeSend: func(e *sentry.Event, _ *sentry.EventHint) *sentry.Event {
			e.Request = nil
			return e
		},
	})
	if err != nil {
		return nil, fmt.Errorf("SENTRY_DSN: %w", err)
	}
	return &Reporter{hub: sentry.NewHub(client, sentry.NewScope())}, nil
}

// Report sends err (a 5xx cause, or a recovered panic) with the request id
// and the user id (empty when unknown).
func (r *Reporter) Report(err error, requestID, userID string, panicked bool) {
	if r == nil {
		return
	}
	r.hub.WithScope(func(s *sentry.Scope) {
		s.SetTag("request_id", requestID)
		if userID != "" {
			s.SetUser(sentry.User{ID: userID})
		}
		if panicked {
			s.SetLevel(sentry.LevelFatal)
		}
		r.hub.CaptureException(err)
	})
}

// FlushOK waits up to timeout for queued events and reports whether
// everything was sent in time.
func (r *Reporter) FlushOK(timeout time.Duration) bool {
	return r == nil || r.hub.Flush(timeout)
}

// Close sends what is queued (up to timeout) and stops the client's
// goroutines.
func (r *Reporter) Close(timeout time.Duration) {
	if r == nil {
		return
	}
	r.hub.Flush(timeout)
	r.hub.Client().Close()
}
