package usercache_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (a server,
// pool or refresh that was never stopped).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
