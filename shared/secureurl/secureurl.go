// Package secureurl is the one rule both programs apply to the URLs they
// are configured with (an issuer, a JWKS, a gateway, an upstream): https,
// or plain http on a loopback host only (local development and tests). A
// key set, a token or a prompt sent over plain HTTP across a network could
// be read or swapped by anyone on the path.
package secureurl

import (
	"errors"
	"net"
	"net/url"
)

// Errors of Check, for callers that say them in their own words.
var (
	ErrNotAbsolute = errors.New("must be an absolute https URL")
	ErrCredentials = errors.New("must not contain credentials")
	ErrPlainHTTP   = errors.New("must use https (plain http only on a loopback host: 127.0.0.1, ::1, localhost)")
)

// Check reports whether raw is an absolute http(s) URL without
// credentials, and https unless its host is a loopback host.
func Check(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return ErrNotAbsolute
	case u.User != nil:
		return ErrCredentials
	case u.Scheme == "http" && !IsLoopback(u.Hostname()):
		return ErrPlainHTTP
	}
	return nil
}

// IsLoopback reports whether host (no port) names the local machine:
// localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
