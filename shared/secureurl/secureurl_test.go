package secureurl_test

import (
	"testing"

	"github.com/signals-sorcery/sas/shared/secureurl"
)

func TestCheck(t *testing.T) {
	for raw, want := range map[string]error{
		"https://clerk.example.com":               nil,
		"https://clerk.example.com/.well-known/x": nil,
		"http://127.0.0.1:8080/dev/idp":           nil,
		"http://127.0.0.2:8080":                   nil,
		"http://[::1]:8080":                       nil,
		"http://localhost:8080":                   nil,
		"http://clerk.example.com":                secureurl.ErrPlainHTTP,
		"http://10.0.0.1":                         secureurl.ErrPlainHTTP,
		"http://localhost.example.com":            secureurl.ErrPlainHTTP,
		"http://127.0.0.1.nip.io":                 secureurl.ErrPlainHTTP,
		"https://user:pass@clerk.example.com":     secureurl.ErrCredentials,
		"http://user@127.0.0.1":                   secureurl.ErrCredentials,
		"clerk.example.com":                       secureurl.ErrNotAbsolute,
		"/relative":                               secureurl.ErrNotAbsolute,
		"ftp://example.com":                       secureurl.ErrNotAbsolute,
		"":                                        secureurl.ErrNotAbsolute,
		"https://%zz":                             secureurl.ErrNotAbsolute,
	} {
		if got := secureurl.Check(raw); got != want {
			t.Errorf("Check(%q) = %v, want %v", raw, got, want)
		}
	}
}
