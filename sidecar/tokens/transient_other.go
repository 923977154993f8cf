//go:build !windows

package tokens

// transient: on Unix a file being renamed over can still be opened, and
// an open file renamed over; no failure is transient.
func transient(error) bool { return false }
