package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/login"
	"github.com/signals-sorcery/sas/sidecar/tokens"
)

// MaxBodyBytes is the largest request body the sidecar forwards: it is
// buffered so that a 401 can be retried with it (the gateway's limit too).
const MaxBodyBytes = 1 << 20

// dropped are the request headers never forwarded: those of one connection
// (RFC 9110 §7.6.1) and of its framing (the body is re-sent with its own
// length), forwarding claims (the sidecar is no proxy of anyone's), and the
// caller's credentials and browser context — the sidecar sets the
// Authorization header itself.
var dropped = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Expect", "Host",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
	"Authorization", "Cookie", "Origin", "Referer"}

// TransportOptions configure a Transport.
type TransportOptions struct {
	// Upstream carries the requests to the gateway (default: an
	// http.Transport with no overall timeout, since streams may be long;
	// dial and header timeouts bounded).
	Upstream http.RoundTripper
	// Ended, when set, runs when the session turns out to have ended at
	// the provider (the daemon announces it).
	Ended  func(ctx context.Context)
	Logger *slog.Logger
}

// Transport is the one way both programs call the gateway: the sidecar's
// two front doors and sas-login's whoami and delete-account. It takes
// requests whose URL is a gateway path (no scheme or host: "/v1/me?x=1",
// as a server receives it), refuses any other path (checkPath), sends it
// to the gateway with the user's ID token attached — the caller's own
// credentials and hop-by-hop headers dropped — and on a 401 refreshes the
// session and retries once (bodies up to MaxBodyBytes are buffered for
// that). It never follows redirects: the token would go along. Concurrent
// callers share one token load and one refresh. It is safe for concurrent
// use.
//
// Errors are *wire.Error: bad_request (the path), payload_too_large,
// not_signed_in, unavailable (no keyring), gateway_unreachable (with the
// cause, never the token); or the request context's error.
type Transport struct {
	s        *Session
	o        TransportOptions
	upstream http.RoundTripper
	tokenSF  singleflight.Group
}

// NewTransport returns s's Transport.
func NewTransport(s *Session, o TransportOptions) *Transport {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	up := o.Upstream
	if up == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 5 * time.Minute // a non-streamed completion answers when done
		t.MaxIdleConnsPerHost = 16
		up = t
	}
	return &Transport{s: s, o: o, upstream: up}
}

// RoundTrip sends req to the gateway (see Transport).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if err := checkPath(req.Method, req.URL.String()); err != nil {
		return nil, err
	}
	ctx := req.Context()
	set, err := t.token(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := t.send(req, body, set.IDToken)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The gateway refused a token that looked valid: refresh once, retry once.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	t.o.Logger.Info("gateway answered 401: refreshing the session and retrying once", "path", req.URL.Path)
	set, err = t.refreshed(ctx, set.IDToken)
	if err != nil {
		return nil, err
	}
	return t.send(req, body, set.IDToken)
}

// Call makes a bodiless call to a gateway path and returns the answer's
// body (at most 1 MiB) when its status is want; another status is the
// gateway's error envelope as a *wire.Error.
func (t *Transport) Call(ctx context.Context, method, path string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, path, nil)
	if err != nil {
		return nil, wire.Wrap(wire.CodeBadRequest, "The request could not be built.", err)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, wire.Wrap(wire.CodeGatewayUnreachable, "The gateway's answer could not be read.", err)
	}
	if resp.StatusCode != want {
		var env wire.ErrorBody
		if json.Unmarshal(body, &env) == nil && env.Error.Code != "" {
			return nil, &wire.Error{Code: env.Error.Code, Message: env.Error.Message}
		}
		return nil, wire.Errorf(wire.CodeGatewayUnreachable, "The gateway answered %d to %s %s.", resp.StatusCode, method, path)
	}
	return body, nil
}

// DeleteAccount deletes the signed-in user's account at the gateway
// (DELETE /v1/me: subscription cancelled, the user deleted at the identity
// provider, email erased). The caller signs out after it.
//
// Errors: the gateway's (not_signed_in, unavailable: nothing or not all
// was deleted, a retry finishes it), or RoundTrip's.
func (t *Transport) DeleteAccount(ctx context.Context) error {
	_, err := t.Call(ctx, http.MethodDelete, "/v1/me", http.StatusNoContent)
	return err
}

// token returns a valid ID token; concurrent callers share one load (and
// one refresh, which the session also serialises across processes).
func (t *Transport) token(ctx context.Context) (tokens.Set, error) {
	return t.shared(ctx, "token", t.s.Token)
}

// refreshed replaces a token the gateway refused; concurrent callers with
// the same stale token share one refresh.
func (t *Transport) refreshed(ctx context.Context, stale string) (tokens.Set, error) {
	return t.shared(ctx, "refresh:"+stale, func(c context.Context) (tokens.Set, error) { return t.s.Refresh(c, stale) })
}

// shared runs f once for all concurrent callers of key. The shared call is
// detached from any one caller (others wait on it) but bounded; each caller
// stops waiting when its own ctx ends.
func (t *Transport) shared(ctx context.Context, key string, f func(context.Context) (tokens.Set, error)) (tokens.Set, error) {
	ch := t.tokenSF.DoChan(key, func() (any, error) {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 45*time.Second)
		defer cancel()
		return f(c)
	})
	select {
	case r := <-ch:
		set, _ := r.Val.(tokens.Set)
		return set, t.sessionError(ctx, r.Err)
	case <-ctx.Done():
		return tokens.Set{}, ctx.Err()
	}
}

// sessionError maps session failures to the contract's error codes and
// reports a session that ended.
func (t *Transport) sessionError(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotSignedIn), errors.Is(err, ErrSessionEnded):
		if errors.Is(err, ErrSessionEnded) && t.o.Ended != nil {
			t.o.Ended(ctx)
		}
		return &wire.Error{Code: wire.CodeNotSignedIn, Message: "Not signed in: sign in first.", Err: err}
	case errors.Is(err, tokens.ErrUnavailable):
		return &wire.Error{Code: wire.CodeUnavailable, Message: "The OS keyring is not available.", Err: err}
	default:
		return &wire.Error{Code: wire.CodeGatewayUnreachable, Message: "Could not refresh the session: " + login.Printable(err.Error(), 300), Err: err}
	}
}

// readBody reads and closes the request body, at most MaxBodyBytes.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	b, err := io.ReadAll(io.LimitReader(req.Body, MaxBodyBytes+1))
	switch {
	case err != nil && req.Context().Err() != nil:
		return nil, req.Context().Err()
	case err != nil:
		return nil, wire.Wrap(wire.CodeBadRequest, "The request body could not be read.", err)
	case len(b) > MaxBodyBytes:
		return nil, wire.Errorf(wire.CodePayloadTooLarge, "The request body is over 1 MiB.")
	}
	return b, nil
}

// send makes one attempt: req's method, path and headers, with body, to the
// gateway with idToken.
func (t *Transport) send(req *http.Request, body []byte, idToken string) (*http.Response, error) {
	ctx := req.Context()
	gateway := t.s.Settings().Gateway
	out, err := http.NewRequestWithContext(ctx, req.Method, gateway+req.URL.String(), bytes.NewReader(body))
	if err != nil {
		return nil, wire.Wrap(wire.CodeBadRequest, "The request could not be built.", err)
	}
	for k, vs := range req.Header {
		out.Header[k] = append([]string(nil), vs...)
	}
	for _, c := range out.Header.Values("Connection") {
		for name := range strings.SplitSeq(c, ",") {
			out.Header.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range dropped {
		out.Header.Del(k)
	}
	out.Header.Set("Authorization", "Bearer "+idToken)
	resp, err := t.upstream.RoundTrip(out)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The cause names the gateway URL, never the token (a header).
		var cause string
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			cause = ue.Err.Error()
		} else {
			cause = err.Error()
		}
		return nil, &wire.Error{Code: wire.CodeGatewayUnreachable,
			Message: "The gateway at " + gateway + " is unreachable: " + login.Printable(cause, 200), Err: err}
	}
	return resp, nil
}

// checkPath admits gateway API paths only, parsed as a URL reference
// rather than cut as a string: a path (no scheme, host or fragment) under
// /v1/, with no dot segment, empty segment, or encoded slash, backslash or
// dot that would climb out of it on the way; and no CONNECT or TRACE.
func checkPath(method, p string) error {
	bad := wire.Errorf(wire.CodeBadRequest, "Only gateway paths under /v1/ are proxied (a path, with no fragment).")
	if method == http.MethodConnect || method == http.MethodTrace {
		return wire.Errorf(wire.CodeBadRequest, "Method %s is not proxied.", method)
	}
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" || u.User != nil || strings.Contains(p, "#") {
		return bad
	}
	raw := u.EscapedPath()
	lower := strings.ToLower(raw)
	if !strings.HasPrefix(u.Path, "/v1/") || !strings.HasPrefix(raw, "/v1/") ||
		strings.Contains(lower, "%2e") || strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(raw, "//") {
		return bad
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return bad
		}
	}
	return nil
}
