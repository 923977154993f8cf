package billing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v84/webhook"
	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.HTTPLinger) }

const (
	secret = "whsec_test_secret"
	price  = "price_pro_test"
)

// env is the whole gateway (app.New) with billing on, against a real
// Postgres and Redis and stripe-mock (Stripe's own API mock) as Stripe.
type env struct {
	t    *testing.T
	url  string
	gw   *app.Gateway
	iss  *testenv.Issuer
	logs *testenv.SyncBuffer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mock := testenv.StripeMockURL(t)
	e := &env{t: t, iss: testenv.NewIssuer(t, "RS256", nil), logs: &testenv.SyncBuffer{}}
	db := testenv.NewDatabase(t)
	cfg := config.Config{Issuer: e.iss.Issuer(), Audiences: []string{"sas-api"}, DatabaseURL: db.URL, RedisURL: testenv.RedisURL(t),
		Stripe: config.Stripe{APIKey: "sk_test_123", WebhookSecret: secret, ProPriceID: price, APIBase: mock, ReturnURL: "sas://billing/done"}}
	gw, err := app.New(context.Background(), cfg, slog.New(slog.NewJSONHandler(e.logs, nil)), app.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
	t.Cleanup(srv.Close)
	e.url, e.gw = srv.URL, gw
	return e
}

func (e *env) call(method, path, token string) (int, string) {
	e.t.Helper()
	return testenv.Call(e.t, method, e.url+path, token)
}

// user signs a user in (GET /v1/me creates them) and returns their token.
func (e *env) user(sub string) string {
	tok := e.iss.Token(e.t, sub, "sas-api", sub+"@example.com", sub, nil)
	if status, body := e.call("GET", "/v1/me", tok); status != 200 {
		e.t.Fatalf("/v1/me: %d %s", status, body)
	}
	return tok
}

// event posts a Stripe event signed like Stripe signs them (the library's
// test helper), signedAt being the signature's timestamp.
func (e *env) event(id, typ string, created time.Time, object any, signedAt time.Time, sign string) (int, string) {
	e.t.Helper()
	obj, _ := json.Marshal(object)
	payload := fmt.Sprintf(`{"id":%q,"object":"event","type":%q,"created":%d,"api_version":"2020-08-27","data":{"object":%s}}`, id, typ, created.Unix(), obj)
	return e.raw([]byte(payload), signedAt, sign)
}

func (e *env) raw(payload []byte, signedAt time.Time, sign string) (int, string) {
	e.t.Helper()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: sign, Timestamp: signedAt})
	req, _ := http.NewRequest("POST", e.url+"/webhooks/stripe", strings.NewReader(string(payload)))
	req.Header.Set("Stripe-Signature", signed.Header)
	req.Header.Set("Content-Type", "application/json")
	return testenv.Do(e.t, req)
}

func subscription(id, customer, user, status string, pro bool) map[string]any {
	p := "price_other"
	if pro {
		p = price
	}
	return map[string]any{"id": id, "object": "subscription", "customer": customer, "status": status,
		"metadata": map[string]string{"clerk_user_id": user},
		"items": map[string]any{"object": "list", "data": []any{map[string]any{"id": "si_" + id, "object": "subscription_item",
			"price": map[string]any{"id": p, "object": "price"}}}}}
}

func (e *env) plan(tok string) (string, string) {
	e.t.Helper()
	_, me := e.call("GET", "/v1/me", tok)
	_, limits := e.call("GET", "/v1/limits", tok)
	var m struct{ Plan string }
	_ = json.Unmarshal([]byte(me), &m)
	return m.Plan, limits
}

func TestCheckoutAndPortal(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_buyer")
	status, body := e.call("POST", "/v1/billing/portal", tok)
	if status != 409 || !strings.Contains(body, `"conflict"`) {
		t.Errorf("portal before checkout: %d %s", status, body)
	}
	status, body = e.call("POST", "/v1/billing/checkout", tok)
	if status != 200 || !strings.Contains(body, `"url":"`) {
		t.Fatalf("checkout: %d %s", status, body)
	}
	b1, err := e.gw.DB.Billing(context.Background(), "user_buyer")
	if err != nil || !strings.HasPrefix(b1.CustomerID, "cus_") {
		t.Fatalf("customer not recorded: %+v %v", b1, err)
	}
	if status, _ := e.call("POST", "/v1/billing/checkout", tok); status != 200 {
		t.Fatalf("second checkout: %d", status)
	}
	if b2, _ := e.gw.DB.Billing(context.Background(), "user_buyer"); b2.CustomerID != b1.CustomerID {
		t.Errorf("the customer was not reused: %s then %s", b1.CustomerID, b2.CustomerID)
	}
	if status, body := e.call("POST", "/v1/billing/portal", tok); status != 200 || !strings.Contains(body, `"url":"`) {
		t.Errorf("portal: %d %s", status, body)
	}
	if status, _ := e.call("POST", "/v1/billing/checkout", ""); status != 401 {
		t.Errorf("checkout without a token: %d", status)
	}
}

// TestUpgradeAndCancel: checkout.session.completed + subscription.created
// make the user pro on the next call (/v1/me and /v1/limits); deletion
// makes them free again.
func TestUpgradeAndCancel(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_up")
	now := time.Now()
	// Stripe often sends the subscription before the checkout session.
	if s, b := e.event("evt_sub_created", "customer.subscription.created", now, subscription("sub_1", "cus_up", "user_up", "active", true), now, secret); s != 200 || b != `{"received":true}`+"\n" {
		t.Fatalf("subscription.created: %d %q", s, b)
	}
	cs := map[string]any{"id": "cs_1", "object": "checkout.session", "client_reference_id": "user_up", "customer": "cus_up", "subscription": "sub_1"}
	if s, _ := e.event("evt_checkout", "checkout.session.completed", now.Add(time.Second), cs, now, secret); s != 200 {
		t.Fatalf("checkout.session.completed: %d", s)
	}
	plan, limits := e.plan(tok)
	if plan != "pro" || !strings.Contains(limits, `"limit":60`) {
		t.Fatalf("after upgrade: plan %q, limits %s", plan, limits)
	}
	if b, _ := e.gw.DB.Billing(context.Background(), "user_up"); b.CustomerID != "cus_up" || b.SubscriptionID != "sub_1" {
		t.Errorf("billing = %+v", b)
	}
	// invoice events are recorded on the user.
	if s, _ := e.event("evt_inv", "invoice.payment_failed", now.Add(2*time.Second), map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_up"}, now, secret); s != 200 {
		t.Fatal("invoice event")
	}
	if b, _ := e.gw.DB.Billing(context.Background(), "user_up"); b.LastEvent != "invoice.payment_failed" {
		t.Errorf("last billing event = %q", b.LastEvent)
	}
	if s, _ := e.event("evt_sub_deleted", "customer.subscription.deleted", now.Add(3*time.Second), subscription("sub_1", "cus_up", "user_up", "canceled", true), now, secret); s != 200 {
		t.Fatal("subscription.deleted")
	}
	if plan, _ := e.plan(tok); plan != "free" {
		t.Errorf("after cancellation: plan %q", plan)
	}
}

func TestWebhookRefusals(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_w")
	now := time.Now()
	sub := subscription("sub_w", "cus_w", "user_w", "active", true)
	for name, tc := range map[string]struct {
		signedAt time.Time
		secret   string
		raw      string
	}{
		"forged signature": {now, "whsec_someone_else", ""},
		"stale timestamp":  {now.Add(-301 * time.Second), secret, ""},
		"malformed JSON":   {now, secret, `{"id":"evt_bad","type":`},
	} {
		t.Run(name, func(t *testing.T) {
			var s int
			var b string
			if tc.raw != "" {
				s, b = e.raw([]byte(tc.raw), tc.signedAt, tc.secret)
			} else {
				s, b = e.event("evt_refused", "customer.subscription.created", now, sub, tc.signedAt, tc.secret)
			}
			if s != 400 || !strings.Contains(b, `"bad_request"`) {
				t.Errorf("%d %s", s, b)
			}
		})
	}
	if s, _ := e.call("POST", "/webhooks/stripe", ""); s != 400 {
		t.Errorf("no signature: %d", s)
	}
	// Over 256 KiB, signed or not: 413, as the README says (it was 400).
	big := `{"id":"evt_big","type":"charge.refunded","data":{"object":{"pad":"` + strings.Repeat("x", 256<<10) + `"}}}`
	if s, b := e.raw([]byte(big), now, secret); s != 413 || !strings.Contains(b, `"payload_too_large"`) {
		t.Errorf("a body over 256 KiB: %d %s", s, b)
	}
	if plan, _ := e.plan(tok); plan != "free" {
		t.Errorf("a refused event changed the plan: %s", plan)
	}
	// Unknown types and unknown users: recorded, 200.
	if s, _ := e.event("evt_unknown_type", "charge.refunded", now, map[string]any{"id": "ch_1", "object": "charge"}, now, secret); s != 200 {
		t.Errorf("unknown type: %d", s)
	}
	if s, _ := e.event("evt_nobody", "customer.subscription.created", now, subscription("sub_x", "cus_x", "user_nobody", "active", true), now, secret); s != 200 {
		t.Errorf("unknown user: %d", s)
	}
}

// TestOrderingAndDuplicates: an older event delivered late changes nothing;
// duplicates (also concurrent ones) take effect once.
func TestOrderingAndDuplicates(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_o")
	t0 := time.Now().Add(-time.Hour)
	post := func(id, typ string, created time.Time, status string) {
		t.Helper()
		if s, b := e.event(id, typ, created, subscription("sub_o", "cus_o", "user_o", status, true), time.Now(), secret); s != 200 {
			t.Fatalf("%s: %d %s", id, s, b)
		}
	}
	// deleted (newer) arrives before updated (older, active): stays free.
	post("evt_new_deleted", "customer.subscription.deleted", t0.Add(time.Minute), "canceled")
	post("evt_old_updated", "customer.subscription.updated", t0, "active")
	if plan, _ := e.plan(tok); plan != "free" {
		t.Fatalf("an older event overwrote a newer state: plan %s", plan)
	}
	// A tie: deleted wins over updated of the same second.
	post("evt_tie_updated", "customer.subscription.updated", t0.Add(2*time.Minute), "active")
	post("evt_tie_deleted", "customer.subscription.deleted", t0.Add(2*time.Minute), "canceled")
	post("evt_tie_updated2", "customer.subscription.updated", t0.Add(2*time.Minute), "active")
	if plan, _ := e.plan(tok); plan != "free" {
		t.Fatalf("on a tie, deleted must win: plan %s", plan)
	}
	// Ten concurrent deliveries of one event: one effect.
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if s, _ := e.event("evt_dup", "customer.subscription.updated", t0.Add(3*time.Minute), subscription("sub_o", "cus_o", "user_o", "active", true), time.Now(), secret); s != 200 {
				t.Errorf("duplicate delivery answered %d", s)
			}
		})
	}
	wg.Wait()
	if plan, _ := e.plan(tok); plan != "pro" {
		t.Errorf("plan %s after the newest event", plan)
	}
	if n := strings.Count(e.logs.String(), `"id":"evt_dup","type":"customer.subscription.updated","duplicate":false`); n != 1 {
		t.Errorf("evt_dup took effect %d times", n)
	}
	var rows int
	if err := e.gw.DB.Pool().QueryRow(context.Background(), `SELECT count(*) FROM stripe_events WHERE id = 'evt_dup'`).Scan(&rows); err != nil || rows != 1 {
		t.Errorf("stripe_events rows for evt_dup: %d %v", rows, err)
	}
}

func TestBillingOff(t *testing.T) {
	iss := testenv.NewIssuer(t, "RS256", nil)
	db := testenv.NewDatabase(t)
	gw, err := app.New(context.Background(), config.Config{Issuer: iss.Issuer(), Audiences: []string{"sas-api"}, DatabaseURL: db.URL, RedisURL: testenv.RedisURL(t)},
		slog.New(slog.DiscardHandler), app.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
	defer srv.Close()
	e := &env{t: t, url: srv.URL, gw: gw, iss: iss}
	tok := e.user("user_off")
	for _, p := range []string{"/v1/billing/checkout", "/v1/billing/portal"} {
		if s, b := e.call("POST", p, tok); s != 404 || !strings.Contains(b, "not configured") {
			t.Errorf("%s: %d %s", p, s, b)
		}
	}
	if s, _ := e.call("POST", "/webhooks/stripe", ""); s != 404 {
		t.Errorf("webhook: %d", s)
	}
}

// TestReviewedBillingEdges: the cases a review found.
func TestReviewedBillingEdges(t *testing.T) {
	e := newEnv(t)
	now := time.Now().Truncate(time.Second)
	t.Run("created then updated in the same second: the update (paid) wins", func(t *testing.T) {
		tok := e.user("user_tie")
		e.event("evt_tc", "customer.subscription.created", now, subscription("sub_tie", "cus_tie", "user_tie", "incomplete", true), now, secret)
		e.event("evt_tu", "customer.subscription.updated", now, subscription("sub_tie", "cus_tie", "user_tie", "active", true), now, secret)
		if plan, _ := e.plan(tok); plan != "pro" {
			t.Errorf("plan %s", plan)
		}
		// And delivered the other way round.
		tok2 := e.user("user_tie2")
		e.event("evt_tu2", "customer.subscription.updated", now, subscription("sub_tie2", "cus_tie2", "user_tie2", "active", true), now, secret)
		e.event("evt_tc2", "customer.subscription.created", now, subscription("sub_tie2", "cus_tie2", "user_tie2", "incomplete", true), now, secret)
		if plan, _ := e.plan(tok2); plan != "pro" {
			t.Errorf("reversed delivery: plan %s", plan)
		}
	})
	t.Run("concurrent first events of a new subscription: the newer wins", func(t *testing.T) {
		for i := range 5 {
			user := fmt.Sprintf("user_race_%d", i)
			tok := e.user(user)
			sub := fmt.Sprintf("sub_race_%d", i)
			var wg sync.WaitGroup
			wg.Go(func() {
				e.event("evt_rc_"+sub, "customer.subscription.created", now.Add(-time.Minute), subscription(sub, "cus_"+sub, user, "incomplete", true), now, secret)
			})
			wg.Go(func() {
				e.event("evt_ru_"+sub, "customer.subscription.updated", now, subscription(sub, "cus_"+sub, user, "active", true), now, secret)
			})
			wg.Wait()
			if plan, _ := e.plan(tok); plan != "pro" {
				t.Errorf("%s: plan %s", sub, plan)
			}
		}
	})
	t.Run("malformed object: 400, not 503", func(t *testing.T) {
		s, b := e.event("evt_malformed", "customer.subscription.updated", now, map[string]any{"id": "sub_m", "status": 5}, now, secret)
		if s != 400 || !strings.Contains(b, "bad_request") {
			t.Errorf("%d %s", s, b)
		}
	})
	t.Run("a pro user cannot check out twice", func(t *testing.T) {
		tok := e.user("user_twice")
		e.event("evt_twice", "customer.subscription.created", now, subscription("sub_twice", "cus_twice", "user_twice", "active", true), now, secret)
		if s, b := e.call("POST", "/v1/billing/checkout", tok); s != 409 || !strings.Contains(b, "portal") {
			t.Errorf("%d %s", s, b)
		}
	})
}
