package daemon

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/signals-sorcery/sas/shared/wire"
	"github.com/signals-sorcery/sas/sidecar/login"
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

// Transport returns the RoundTripper through which both front doors call
// the gateway. It takes requests whose URL is a gateway path (no scheme or
// host: "/v1/me?x=1", as a server receives it), refuses any other path
// (checkPath), sends it to the gateway with the user's ID token attached —
// the caller's own credentials and hop-by-hop headers dropped — and on a
// 401 refreshes the session and retries once (bodies up to MaxBodyBytes are
// buffered for that). It never follows redirects: the token would go along.
//
// Errors are *wire.Error: bad_request (the path), payload_too_large,
// not_signed_in, unavailable (no keyring), gateway_unreachable (with the
// cause, never the token); or the request context's error.
func (d *Daemon) Transport() http.RoundTripper { return gatewayTransport{d} }

type gatewayTransport struct{ d *Daemon }

func (t gatewayTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	d := t.d
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	if err := checkPath(req.Method, req.URL.String()); err != nil {
		return nil, err
	}
	ctx := req.Context()
	set, err := d.token(ctx)
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
	d.o.Logger.Info("gateway answered 401: refreshing the session and retrying once", "path", req.URL.Path)
	set, err = d.refreshed(ctx, set.IDToken)
	if err != nil {
		return nil, err
	}
	return t.send(req, body, set.IDToken)
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
func (t gatewayTransport) send(req *http.Request, body []byte, idToken string) (*http.Response, error) {
	d := t.d
	ctx := req.Context()
	gateway := d.o.Session.Settings().Gateway
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
	resp, err := d.upstream.RoundTrip(out)
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
