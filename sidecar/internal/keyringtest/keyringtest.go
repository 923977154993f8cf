// Package keyringtest tells the sidecar's tests whether the OS keyring
// they store into for real is there: on Linux the Secret Service that
// scripts/test starts, on Windows the Credential Manager (Wine's under
// scripts/test-windows), which every Windows session has.
package keyringtest

import (
	"os"
	"runtime"
	"testing"
)

// Require fails t unless the OS keyring is reachable.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS == "windows" {
		return // the Credential Manager needs no service started
	}
	if os.Getenv("TEST_SECRET_SERVICE") == "" {
		t.Fatal("TEST_SECRET_SERVICE is not set: run scripts/test, which starts gnome-keyring's Secret Service in a private D-Bus session")
	}
}
