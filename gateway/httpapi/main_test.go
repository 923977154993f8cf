package httpapi_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

// TestMain fails the package if a test leaves a goroutine behind (a server,
// pool or refresh that was never stopped).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.HTTPLinger)
}
