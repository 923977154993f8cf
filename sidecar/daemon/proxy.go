package daemon

import (
	"bytes"
	"context"
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

// hopByHop are the headers of one connection (RFC 9110 §7.6.1), never
// forwarded; the caller's credentials and browser context are dropped too:
// the sidecar sets the Authorization header itself.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Authorization", "Cookie", "Origin", "Referer", "Host"}

// Do sends a request to the gateway with the ID token attached and returns
// its response for the caller to relay (and close). A 401 from the gateway
// triggers one refresh and one retry. ctx cancels the gateway request.
//
// Errors: *wire.Error not_signed_in, bad_request (path outside /v1/),
// gateway_unreachable (with the cause), unavailable (no keyring).
func (d *Daemon) Do(ctx context.Context, method, path string, header http.Header, body []byte) (*http.Response, error) {
	if err := CheckPath(method, path); err != nil {
		return nil, err
	}
	set, err := d.token(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := d.send(ctx, method, path, header, body, set.IDToken)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The gateway refused a token that looked valid: refresh once, retry once.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	d.o.Logger.Info("gateway answered 401: refreshing the session and retrying once", "path", path)
	set, err = d.refreshed(ctx, set.IDToken)
	if err != nil {
		return nil, err
	}
	return d.send(ctx, method, path, header, body, set.IDToken)
}

func (d *Daemon) send(ctx context.Context, method, path string, header http.Header, body []byte, idToken string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, d.o.Settings.Gateway+path, bytes.NewReader(body))
	if err != nil {
		return nil, wire.Wrap(wire.CodeBadRequest, "The request could not be built.", err)
	}
	for k, vs := range header {
		req.Header[k] = append([]string(nil), vs...)
	}
	StripHopByHop(req.Header)
	req.Header.Set("Authorization", "Bearer "+idToken)
	resp, err := d.client.Do(req)
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
			Message: "The gateway at " + d.o.Settings.Gateway + " is unreachable: " + login.Printable(cause, 200), Err: err}
	}
	return resp, nil
}

// checkPath admits gateway API paths only, parsed as a URL reference
// rather than cut as a string: a path (no scheme, host or fragment) under
// /v1/, with no dot segment, empty segment, or encoded slash, backslash or
// dot that would climb out of it on the way; and no CONNECT or TRACE.
func CheckPath(method, p string) error {
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

// StripHopByHop removes hop-by-hop headers, including those the
// Connection header names.
func StripHopByHop(h http.Header) {
	for _, c := range h.Values("Connection") {
		for _, name := range strings.Split(c, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}
