// Package localapi is the sidecar's local HTTP API on a Unix socket: the
// Electron main process (or curl --unix-socket) calls /sidecar/status,
// /sidecar/login, /sidecar/logout, and any /v1/… path, which is proxied to
// the gateway with the user's token attached and streamed back.
//
// Only the user who runs the sidecar may talk to it: the socket is 0600 in
// a 0700 directory, every connection's peer uid is checked, and requests
// that carry Origin or Referer — a browser page trying its luck — are
// refused, as Tailscale's LocalAPI does.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/daemon"
)

// Handler serves the local API of d.
func Handler(d *daemon.Daemon, log *slog.Logger) http.Handler {
	h := &handler{d: d, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sidecar/status", func(w http.ResponseWriter, r *http.Request) {
		h.answer(w, r, func(ctx context.Context) (any, error) { return d.Status(ctx) })
	})
	mux.HandleFunc("POST /sidecar/login", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Redirect string `json:"redirect"`
		}
		if err := readParams(r, &p); err != nil || (p.Redirect != "" && p.Redirect != "app" && p.Redirect != "loopback") {
			writeError(w, wire.Errorf(wire.CodeBadRequest, `The body must be empty, {} or {"redirect":"app"|"loopback"}.`))
			return
		}
		h.answer(w, r, func(ctx context.Context) (any, error) {
			return d.Login(ctx, daemon.LoginOptions{App: p.Redirect == "app"})
		})
	})
	mux.HandleFunc("POST /sidecar/completeLogin", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			URL string `json:"url"`
		}
		if err := readParams(r, &p); err != nil || p.URL == "" {
			writeError(w, wire.Errorf(wire.CodeBadRequest, `The body must be {"url": the callback URL the app received}.`))
			return
		}
		h.answer(w, r, func(ctx context.Context) (any, error) { return d.CompleteLogin(ctx, p.URL) })
	})
	mux.HandleFunc("POST /sidecar/logout", func(w http.ResponseWriter, r *http.Request) {
		h.answer(w, r, func(ctx context.Context) (any, error) { return d.Logout(ctx) })
	})
	mux.HandleFunc("/v1/", h.proxy)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, wire.Errorf(wire.CodeNotFound, "No route for %s %s (try /sidecar/status or /v1/…).", r.Method, r.URL.Path))
	})
	return h.guard(mux)
}

type handler struct {
	d   *daemon.Daemon
	log *slog.Logger
}

// readParams reads a small JSON body (empty: none) into v.
func readParams(r *http.Request, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// guard refuses requests from a browser context.
func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
			h.log.Warn("refused a request with Origin/Referer", "path", r.URL.Path)
			writeError(w, &wire.Error{Code: wire.CodeForbidden, Message: "Requests from web pages are refused."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) answer(w http.ResponseWriter, r *http.Request, f func(context.Context) (any, error)) {
	v, err := f(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// proxy forwards a /v1/ request to the gateway and relays the answer as it
// arrives, flushing after every read, so server-sent events stream.
func (h *handler) proxy(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, daemon.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, wire.Errorf(wire.CodePayloadTooLarge, "The request body is over 1 MiB."))
			return
		}
		writeError(w, wire.Wrap(wire.CodeBadRequest, "The request body could not be read.", err))
		return
	}
	path := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		path += "?" + r.URL.RawQuery
	}
	resp, err := h.d.Do(r.Context(), r.Method, path, r.Header.Clone(), body)
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, err)
		}
		return
	}
	defer resp.Body.Close()
	daemon.StripHopByHop(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return // the client left: returning cancels the gateway request
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) && r.Context().Err() == nil {
				h.log.Warn("the gateway's answer broke off", "path", r.URL.Path, "err", rerr)
				// Reset the connection: ending the chunked body cleanly would
				// tell the client a cut-off answer was complete.
				panic(http.ErrAbortHandler)
			}
			return
		}
	}
}

func writeError(w http.ResponseWriter, err error) {
	we, ok := errors.AsType[*wire.Error](err)
	if !ok {
		// Never a Go error's text: it is not written for the app's user.
		we = &wire.Error{Code: wire.CodeInternal, Message: "Internal error in the sidecar; its log says more."}
		slog.Default().Error("internal error", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(wire.HTTPStatus(we.Code))
	_ = json.NewEncoder(w).Encode(wire.ErrorBody{Error: wire.ErrorDetail{Code: we.Code, Message: we.Message}})
}
