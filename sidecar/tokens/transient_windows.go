//go:build windows

package tokens

import (
	"errors"

	"golang.org/x/sys/windows"
)

// transient reports whether a file operation failed only because another
// process had the file open at that moment: Windows refuses to open a file
// that is being renamed over, and to rename over one that is open, where
// Unix lets both happen. Another sas-login or the sidecar reading or
// saving the tokens at the same time is what causes it.
func transient(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED) ||
		errors.Is(err, windows.ERROR_LOCK_VIOLATION)
}
