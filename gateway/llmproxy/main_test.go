package llmproxy_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

// TestMain fails the package if a relay, upstream request or server
// goroutine outlives its test (client disconnects and cut streams included).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.HTTPLinger)
}
