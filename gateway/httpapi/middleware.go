package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/signals-sorcery/sas/gateway/metrics"
	"github.com/signals-sorcery/sas/shared/wire"
)

// MaxBodyBytes is the largest request body accepted (contract: 1 MiB).
const MaxBodyBytes = 1 << 20

type ctxKey int

const (
	requestIDKey ctxKey = iota
	userKey
)

// RequestID returns the request id of ctx, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// requestID echoes a sane X-Request-Id from the client (so a trace spans
// the sidecar and the gateway) or makes one, and puts it in the context and
// on the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [12]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey, id)))
	})
}

// validRequestID accepts ids of 1–128 visible ASCII characters without
// quotes or backslashes, so an echoed id cannot forge log fields or headers.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// The access log's bounds on what the client chose: a method or path is
// cut there (marked with "…"), so a request line of tens of KB does not
// write a log line of that size.
const (
	maxLoggedMethod = 16
	maxLoggedPath   = 256
)

// clip cuts s to at most n bytes, at a UTF-8 boundary, and marks the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// accessLog logs one line per request: never headers, never the query;
// the method and path clipped. The metrics bound the method themselves.
func (s *Server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		ctx, overhead := metrics.StartOverhead(r.Context())
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r.WithContext(ctx))
		s.metrics.ObserveOverhead(overhead)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		route := chi.RouteContext(r.Context()).RoutePattern()
		d := s.now().Sub(start)
		s.metrics.Request(route, r.Method, status, d)
		s.logger(r).Info("request",
			"method", clip(r.Method, maxLoggedMethod), "path", clip(r.URL.Path, maxLoggedPath), "route", route, "status", status,
			"bytes", ww.BytesWritten(), "duration_ms", float64(d.Microseconds())/1000)
	})
}

// recoverPanics turns a panic into a 500 envelope (the stack goes to the log,
// never to the client). http.ErrAbortHandler keeps its meaning: abort the
// response without logging.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.logger(r).Error("panic", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			perr := fmt.Errorf("panic: %v", v)
			s.errors.Report(perr, RequestID(r.Context()), userFrom(r.Context()).ClerkUserID, true)
			s.writeError(w, r, &wire.Error{Code: wire.CodeInternal, Message: "Internal error.", Reason: "panic", Err: perr})
		}()
		next.ServeHTTP(w, r)
	})
}

// limitBody refuses declared bodies over MaxBodyBytes at once and caps the
// others while they are read (handlers see *http.MaxBytesError; see decode).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBodyBytes {
			s.writeError(w, r, errTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

var errTooLarge = wire.Errorf(wire.CodePayloadTooLarge, "The request body is over %d bytes.", MaxBodyBytes)

// deadline bounds a handler's work (not streaming ones: those are bounded
// by their upstream's timeouts).
func deadline(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
