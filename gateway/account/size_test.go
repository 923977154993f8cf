package account_test

import (
	"strings"
	"testing"
	"time"
)

// TestWebhookTooLarge: a Clerk delivery over 256 KiB is answered 413
// payload_too_large (the same rule as Stripe's), signed or not.
func TestWebhookTooLarge(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	big := `{"type":"user.updated","data":{"id":"user_big","pad":"` + strings.Repeat("x", 256<<10) + `"}}`
	if status, body := e.deliver(msgID(), big, now, whsec); status != 413 || !strings.Contains(body, `"payload_too_large"`) {
		t.Errorf("a delivery over 256 KiB: %d %s", status, body)
	}
}
