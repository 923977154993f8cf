// Package localapi is the sidecar's local HTTP API on a Unix socket (a
// named pipe on Windows): the Electron main process (or curl
// --unix-socket) calls /sidecar/status, /sidecar/login, /sidecar/logout,
// and any /v1/… path, which is proxied to the gateway with the user's token
// attached and streamed back. One handler serves both transports.
//
// Only the user who runs the sidecar may talk to it: the socket is 0600 in
// a 0700 directory and every connection's peer uid is checked (on Windows
// the pipe's DACL grants the user alone, and remote clients are rejected),
// and requests that carry Origin or Referer — a browser page trying its
// luck — are refused, as Tailscale's LocalAPI does.
package localapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"

	"github.com/signals-sorcery/sas/shared/secureurl"
	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/daemon"
)

// ErrInUse means another live sidecar serves the socket (or the pipe).
var ErrInUse = errors.New("another sas-sidecar is already serving")

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
			h.writeError(w, wire.Errorf(wire.CodeBadRequest, `The body must be empty, {} or {"redirect":"app"|"loopback"}.`))
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
			h.writeError(w, wire.Errorf(wire.CodeBadRequest, `The body must be {"url": the callback URL the app received}.`))
			return
		}
		h.answer(w, r, func(ctx context.Context) (any, error) { return d.CompleteLogin(ctx, p.URL) })
	})
	mux.HandleFunc("POST /sidecar/logout", func(w http.ResponseWriter, r *http.Request) {
		h.answer(w, r, func(ctx context.Context) (any, error) { return d.Logout(ctx) })
	})
	mux.HandleFunc("POST /sidecar/deleteAccount", func(w http.ResponseWriter, r *http.Request) {
		h.answer(w, r, func(ctx context.Context) (any, error) { return d.DeleteAccount(ctx) })
	})
	mux.Handle("/v1/", h.proxy())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.writeError(w, wire.Errorf(wire.CodeNotFound, "No route for %s %s (try /sidecar/status or /v1/…).", r.Method, r.URL.Path))
	})
	return h.guard(mux)
}

type handler struct {
	d   *daemon.Daemon
	log *slog.Logger
}

// localHost reports whether a request's Host names this machine: sas (the
// name the clients use), localhost or a loopback address, any port, or none.
func localHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return host == "" || host == "sas" || secureurl.IsLoopback(host)
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

// guard refuses requests from a browser context, and requests for another
// host: the socket is only reachable from this machine, but should anyone
// forward a TCP port to it, a page whose name was made to resolve to
// 127.0.0.1 (DNS rebinding) still names its own host.
func (h *handler) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !localHost(r.Host) {
			h.log.Warn("refused a request for another host", "path", r.URL.Path)
			h.writeError(w, &wire.Error{Code: wire.CodeForbidden, Message: "Requests for another host are refused: the local API answers host sas or localhost."})
			return
		}
		if r.Header.Get("Origin") != "" || r.Header.Get("Referer") != "" {
			h.log.Warn("refused a request with Origin/Referer", "path", r.URL.Path)
			h.writeError(w, &wire.Error{Code: wire.CodeForbidden, Message: "Requests from web pages are refused."})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (h *handler) answer(w http.ResponseWriter, r *http.Request, f func(context.Context) (any, error)) {
	v, err := f(r.Context())
	if err != nil {
		h.writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// proxy forwards /v1/ requests through the daemon's Transport (the token
// attached there) and relays the answers as they arrive (ReverseProxy
// flushes server-sent events and bodies of unknown length after every
// write); an answer that breaks off resets the connection (ending the
// chunked body cleanly would tell the client a cut-off answer was complete).
func (h *handler) proxy() http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			// The Transport resolves the path against the gateway. The query
			// goes as the client wrote it: ReverseProxy drops the parameters
			// it cannot parse unless told otherwise.
			r.Out.URL.RawQuery = r.In.URL.RawQuery
		},
		Transport: h.d.Transport(),
		ErrorLog:  slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client left
			}
			h.writeError(w, err)
		},
	}
}

func (h *handler) writeError(w http.ResponseWriter, err error) {
	we, ok := errors.AsType[*wire.Error](err)
	if !ok {
		// Never a Go error's text: it is not written for the app's user.
		we = &wire.Error{Code: wire.CodeInternal, Message: "Internal error in the sidecar; its log says more."}
		h.log.Error("internal error", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(wire.HTTPStatus(we.Code))
	_ = json.NewEncoder(w).Encode(wire.ErrorBody{Error: wire.ErrorDetail{Code: we.Code, Message: we.Message}})
}
