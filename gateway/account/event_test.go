package account

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestSvixReferenceVector: the library verifies the signature that Svix's
// (and Standard Webhooks') documentation gives for its worked example, and
// refuses it once the body or the secret differs.
func TestSvixReferenceVector(t *testing.T) {
	wh, err := svix.NewWebhook("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{"Svix-Id": {"msg_p5jXN8AQM9LWM0D4loKWxJek"}, "Svix-Timestamp": {"1614265330"},
		"Svix-Signature": {"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}}
	if err := wh.VerifyIgnoringTimestamp([]byte(`{"test": 2432232314}`), h); err != nil {
		t.Errorf("the reference vector: %v", err)
	}
	if err := wh.VerifyIgnoringTimestamp([]byte(`{"test": 2432232315}`), h); err == nil {
		t.Error("another body verified")
	}
	// Verify (with the 5-minute tolerance) refuses the 2021 timestamp.
	if err := wh.Verify([]byte(`{"test": 2432232314}`), h); err == nil {
		t.Error("a 2021 signature verified today")
	}
}

func TestParseEvent(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for name, c := range map[string]struct {
		body   string
		want   gateway.AccountEvent
		ok     bool
		errors bool
	}{
		"updated, primary email second, ms times": {
			body: `{"type":"user.updated","timestamp":1796040000000,"data":{"id":"user_1","username":"u1","primary_email_address_id":"e2",
				"email_addresses":[{"id":"e1","email_address":"a@example.com"},{"id":"e2","email_address":"b@example.com"}],"updated_at":1796040000000}}`,
			want: gateway.AccountEvent{ID: "msg", Type: "user.updated", ClerkUserID: "user_1", Email: "b@example.com", Username: "u1", At: at},
			ok:   true,
		},
		"updated, the account's time before the event's": {
			body: `{"type":"user.updated","timestamp":1796040005000,"data":{"id":"user_1","username":"u1",
				"email_addresses":[{"id":"e1","email_address":"a@example.com"}],"updated_at":1796040000000}}`,
			want: gateway.AccountEvent{ID: "msg", Type: "user.updated", ClerkUserID: "user_1", Email: "a@example.com", Username: "u1", At: at},
			ok:   true,
		},
		"updated, no username, seconds": {
			body: `{"type":"user.updated","timestamp":1796040000,"data":{"id":"user_1","first_name":"Ada","last_name":"Lovelace",
				"email_addresses":[{"id":"e1","email_address":"a@example.com"}]}}`,
			want: gateway.AccountEvent{ID: "msg", Type: "user.updated", ClerkUserID: "user_1", Email: "a@example.com", Username: "Ada Lovelace", At: at},
			ok:   true,
		},
		"deleted, time from the delivery": {
			body: `{"type":"user.deleted","data":{"id":"user_1","deleted":true}}`,
			want: gateway.AccountEvent{ID: "msg", Type: "user.deleted", ClerkUserID: "user_1", At: at},
			ok:   true,
		},
		"another type":  {body: `{"type":"session.created","data":{"id":"sess_1"}}`},
		"not JSON":      {body: `{"type":`, errors: true},
		"no type":       {body: `{"data":{"id":"user_1"}}`, errors: true},
		"no user id":    {body: `{"type":"user.updated","data":{}}`, errors: true},
		"data a string": {body: `{"type":"user.deleted","data":"user_1"}`, errors: true},
	} {
		got, ok, err := parseEvent([]byte(c.body), "msg", "1796040000")
		if (err != nil) != c.errors || ok != c.ok {
			t.Errorf("%s: ok %v, err %v", name, ok, err)
			continue
		}
		if err != nil && wire.ErrorCode(err) != wire.CodeBadRequest {
			t.Errorf("%s: %v, want bad_request", name, err)
		}
		if ok && got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, c.want)
		}
	}
}

func TestEpoch(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1796040000":    time.Unix(1796040000, 0).UTC(),
		"1796040000123": time.UnixMilli(1796040000123).UTC(),
		"":              {},
		"-5":            {},
		"1.5":           {},
		"soon":          {},
	} {
		if got := epoch(json.Number(in)); !got.Equal(want) {
			t.Errorf("epoch(%q) = %v, want %v", in, got, want)
		}
	}
}
