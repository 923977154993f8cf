package login

import (
	"io"

	"github.com/pkg/browser"
)

// Browser opens a URL for the user to act on.
type Browser interface {
	Open(url string) error
}

// SystemBrowser opens URLs with the OS's default browser (pkg/browser).
type SystemBrowser struct{}

func init() {
	// pkg/browser copies the opener's output to os.Stdout by default, which
	// would corrupt `sas-login token` output and the sidecar's JSON-RPC.
	browser.Stdout = io.Discard
	browser.Stderr = io.Discard
}

// Open implements Browser.
func (SystemBrowser) Open(url string) error { return browser.OpenURL(url) }
