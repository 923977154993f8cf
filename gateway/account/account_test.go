package account_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stripe/stripe-go/v84/webhook"
	svix "github.com/svix/svix-webhooks/go"
	"go.uber.org/goleak"

	"github.com/signals-sorcery/sas/gateway/app"
	"github.com/signals-sorcery/sas/gateway/config"
	"github.com/signals-sorcery/sas/gateway/devidp"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.HTTPLinger) }

// Svix's signing secrets: the current one and the one it replaced (a
// rotation signs with both for a while).
const (
	whsec    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	oldWhsec = "whsec_dGhlIG9sZCBzZWNyZXQgb2YgdGhpcyBlbmRwb2ludA=="
	clerkKey = "sk_test_clerk_secret"
)

// recorder sits in front of a service (stripe-mock, the Clerk stand-in),
// recording the calls and failing them on demand.
type recorder struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []string // "METHOD /path"
	auth  []string // Authorization headers
	fail  atomic.Int64
}

func newRecorder(t *testing.T, next http.Handler) *recorder {
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.calls = append(rec.calls, r.Method+" "+r.URL.Path)
		rec.auth = append(rec.auth, r.Header.Get("Authorization"))
		rec.mu.Unlock()
		if rec.fail.Load() > 0 {
			rec.fail.Add(-1)
			http.Error(w, `{"errors":[{"code":"internal_error","message":"down for the test"}]}`, http.StatusInternalServerError)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) called(prefix string) (n int, auth string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.calls {
		if strings.HasPrefix(c, prefix) {
			n++
			auth = r.auth[i]
		}
	}
	return n, auth
}

// env is two gateway instances (app.New) sharing a real Postgres and Redis
// (their user caches kept for an hour, so only the bus propagates changes),
// with stripe-mock as Stripe and the dev identity provider's Backend API
// stand-in as Clerk, each behind a recorder.
type env struct {
	t      *testing.T
	urls   []string
	iss    *testenv.Issuer
	db     *pgxpool.Pool
	stripe *recorder
	clerk  *recorder
}

func newEnv(t *testing.T) *env {
	t.Helper()
	mock := testenv.StripeMockURL(t)
	target, _ := url.Parse(mock)
	e := &env{t: t, iss: testenv.NewIssuer(t, "RS256", nil)}
	e.stripe = newRecorder(t, httputil.NewSingleHostReverseProxy(target))
	idp, err := devidp.New(devidp.Options{Issuer: "http://127.0.0.1/unused", SecretKey: clerkKey})
	if err != nil {
		t.Fatal(err)
	}
	e.clerk = newRecorder(t, idp.Handler())
	d := testenv.NewDatabase(t)
	cfg := config.Config{Issuer: e.iss.Issuer(), Audiences: []string{"sas-api"}, DatabaseURL: d.PoolerURL, RedisURL: testenv.RedisURL(t),
		Stripe: config.Stripe{APIKey: "sk_test_123", WebhookSecret: "whsec_stripe", ProPriceID: "price_pro", APIBase: e.stripe.srv.URL, ReturnURL: "sas://billing/done"},
		Clerk:  config.Clerk{WebhookSecret: whsec, SecretKey: clerkKey, APIURL: e.clerk.srv.URL}}
	for range 2 {
		// Each instance keeps users in memory for an hour: what another
		// instance changes reaches it only through the bus (userbus), the
		// way the tests below see it.
		gw, err := app.New(context.Background(), cfg, slog.New(slog.DiscardHandler), app.Deps{UserTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(gw.Close)
		srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
		t.Cleanup(srv.Close)
		e.urls = append(e.urls, srv.URL)
	}
	if e.db, err = pgxpool.New(context.Background(), d.URL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.db.Close)
	return e
}

func (e *env) call(instance int, method, path, token string) (int, string) {
	e.t.Helper()
	return testenv.Call(e.t, method, e.urls[instance]+path, token)
}

// refusedEverywhere waits until every instance refuses tok with
// account_deleted (the contract: within 10 s).
func (e *env) refusedEverywhere(tok string) {
	e.t.Helper()
	for i := range e.urls {
		waitFor(e.t, "account_deleted on instance "+fmt.Sprint(i), func() bool {
			status, body := e.call(i, "GET", "/v1/me", tok)
			return status == 403 && strings.Contains(body, `"account_deleted"`)
		})
	}
}

// user signs a user in (GET /v1/me creates them) and returns their token.
func (e *env) user(sub string) string {
	e.t.Helper()
	tok := e.iss.Token(e.t, sub, "sas-api", sub+"@example.com", "name of "+sub, nil)
	if status, body := e.call(0, "GET", "/v1/me", tok); status != 200 {
		e.t.Fatalf("/v1/me: %d %s", status, body)
	}
	return tok
}

// row reads what the database holds of a user.
func (e *env) row(sub string) (email, username, status string) {
	e.t.Helper()
	err := e.db.QueryRow(context.Background(), `SELECT coalesce(email, ''), coalesce(username, ''), status FROM users WHERE clerk_user_id = $1`, sub).
		Scan(&email, &username, &status)
	if err != nil {
		e.t.Fatalf("user %s: %v", sub, err)
	}
	return email, username, status
}

// deliver posts a Clerk webhook as Svix delivers it, signed with each of
// secrets at signedAt.
func (e *env) deliver(msgID string, payload string, signedAt time.Time, secrets ...string) (int, string) {
	e.t.Helper()
	return e.deliverAs("svix-", msgID, payload, signedAt, secrets...)
}

// deliverAs is deliver with the headers named prefix+id, prefix+timestamp,
// prefix+signature ("svix-", or the Standard Webhooks "webhook-").
func (e *env) deliverAs(prefix, msgID string, payload string, signedAt time.Time, secrets ...string) (int, string) {
	e.t.Helper()
	var sigs []string
	for _, s := range secrets {
		wh, err := svix.NewWebhook(s)
		if err != nil {
			e.t.Fatal(err)
		}
		sig, _ := wh.Sign(msgID, signedAt, []byte(payload))
		sigs = append(sigs, sig)
	}
	req, _ := http.NewRequest("POST", e.urls[0]+"/webhooks/clerk", strings.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(prefix+"id", msgID)
	req.Header.Set(prefix+"timestamp", fmt.Sprint(signedAt.Unix()))
	req.Header.Set(prefix+"signature", strings.Join(sigs, " "))
	return testenv.Do(e.t, req)
}

// updated is a user.updated event shaped like Clerk's.
func updated(sub, email, username string, at time.Time) string {
	return updatedAt(sub, email, username, at, at)
}

// updatedAt is updated with the event's time (timestamp) and the
// account's (data.updated_at) apart.
func updatedAt(sub, email, username string, eventAt, accountAt time.Time) string {
	b, _ := json.Marshal(map[string]any{"object": "event", "type": "user.updated", "instance_id": "ins_test", "timestamp": eventAt.UnixMilli(),
		"data": map[string]any{"object": "user", "id": sub, "username": username, "first_name": "First", "last_name": "Last",
			"primary_email_address_id": "idn_2",
			"email_addresses": []any{
				map[string]any{"id": "idn_1", "object": "email_address", "email_address": "secondary@example.com"},
				map[string]any{"id": "idn_2", "object": "email_address", "email_address": email},
			},
			"updated_at": accountAt.UnixMilli()}})
	return string(b)
}

// deleted is a user.deleted event shaped like Clerk's.
func deleted(sub string, at time.Time) string {
	return fmt.Sprintf(`{"object":"event","type":"user.deleted","instance_id":"ins_test","timestamp":%d,"data":{"object":"user","id":%q,"deleted":true}}`, at.UnixMilli(), sub)
}

var msgN atomic.Int64

func msgID() string { return fmt.Sprintf("msg_test_%d_%d", time.Now().UnixNano(), msgN.Add(1)) }

// waitFor polls cond for up to 10 s: the contract's bound for every
// instance to see a change.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, 10*time.Second, cond)
}

// TestDeleteAccount: DELETE /v1/me cancels the subscription at Stripe,
// deletes the user at Clerk with the secret key, erases the email and
// username; the token is refused with account_deleted on the other
// instance within 10 s; deleting again answers 204; usage is kept.
func TestDeleteAccount(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_leaving")
	if status, body := e.call(0, "POST", "/v1/billing/checkout", tok); status != 200 {
		t.Fatalf("checkout (makes the Stripe customer): %d %s", status, body)
	}
	if _, err := e.db.Exec(context.Background(), `INSERT INTO usage_events VALUES (gen_random_uuid(), 'req_1', 'user_leaving', 'gpt-4o-mini',
		'chat.completions', 10, 0, 5, 42, 'upstream', 'complete', false, now())`); err != nil {
		t.Fatal(err)
	}
	if status, body := e.call(1, "GET", "/v1/me", tok); status != 200 { // the other instance caches the user
		t.Fatalf("/v1/me on the other instance: %d %s", status, body)
	}
	status, body := e.call(0, "DELETE", "/v1/me", tok)
	if status != 204 || body != "" {
		t.Fatalf("DELETE /v1/me: %d %q", status, body)
	}
	if n, _ := e.stripe.called("DELETE /v1/subscriptions/"); n == 0 {
		t.Errorf("no subscription cancelled at Stripe; calls: %v", e.stripe.calls)
	}
	if n, _ := e.stripe.called("POST /v1/checkout/sessions/"); n == 0 { // …/expire
		t.Errorf("no open checkout expired at Stripe; calls: %v", e.stripe.calls)
	}
	if n, auth := e.clerk.called("DELETE /v1/users/user_leaving"); n != 1 || auth != "Bearer "+clerkKey {
		t.Errorf("Clerk Backend API: %d calls, Authorization %q", n, auth)
	}
	if email, username, st := e.row("user_leaving"); email != "" || username != "" || st != "deleted" {
		t.Errorf("after deletion the row holds %q %q %q", email, username, st)
	}
	e.refusedEverywhere(tok)
	// The token is still valid: using it must not bring the email back.
	if email, _, _ := e.row("user_leaving"); email != "" {
		t.Errorf("a request after deletion wrote the email back: %q", email)
	}
	// A repeated DELETE /v1/me runs every step again (Clerk: 404 counts
	// as deleted), and answers 204.
	if status, _ := e.call(1, "DELETE", "/v1/me", tok); status != 204 {
		t.Errorf("a repeated DELETE /v1/me: %d", status)
	}
	if n, _ := e.clerk.called("DELETE /v1/users/"); n != 2 {
		t.Errorf("the repeated deletion: %d calls to Clerk, want 2", n)
	}
	var events int
	_ = e.db.QueryRow(context.Background(), `SELECT count(*) FROM usage_events WHERE clerk_user_id = 'user_leaving'`).Scan(&events)
	if events != 1 {
		t.Errorf("usage events after deletion: %d, want 1 (kept for accounting)", events)
	}
}

// TestDeleteAccountRetry: a Stripe outage answers 503 with the account
// untouched; a Clerk outage answers 503 with the account already erased
// and refused here (personal data first); the retry finishes either.
func TestDeleteAccountRetry(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_retry")
	e.clerk.fail.Store(1)
	status, body := e.call(0, "DELETE", "/v1/me", tok)
	if status != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("DELETE /v1/me with Clerk down: %d %s", status, body)
	}
	if email, _, st := e.row("user_retry"); st != "deleted" || email != "" {
		t.Errorf("with Clerk down the account here is %q %q, want erased and deleted", email, st)
	}
	if status, body := e.call(0, "GET", "/v1/me", tok); status != 403 || !strings.Contains(body, `"account_deleted"`) {
		t.Errorf("after a deletion Clerk could not finish: %d %s", status, body)
	}
	if status, body := e.call(0, "DELETE", "/v1/me", tok); status != 204 {
		t.Fatalf("the retry: %d %s", status, body)
	}
	if n, auth := e.clerk.called("DELETE /v1/users/user_retry"); n != 2 || auth != "Bearer "+clerkKey {
		t.Errorf("Clerk: %d calls (%q), want the failed one and the retry", n, auth)
	}

	// Stripe down (its client retries once: fail both tries).
	tok = e.user("user_retry_stripe")
	if status, body := e.call(0, "POST", "/v1/billing/checkout", tok); status != 200 {
		t.Fatalf("checkout: %d %s", status, body)
	}
	e.stripe.fail.Store(2)
	if status, _ := e.call(0, "DELETE", "/v1/me", tok); status != 503 {
		t.Errorf("DELETE /v1/me with Stripe down: %d", status)
	}
	if n, _ := e.clerk.called("DELETE /v1/users/user_retry_stripe"); n != 0 {
		t.Error("Clerk was called although the subscription could not be cancelled")
	}
	if email, _, st := e.row("user_retry_stripe"); st != "active" || email == "" {
		t.Errorf("a deletion stopped by Stripe changed the account: %q %q", email, st)
	}
	if status, _ := e.call(0, "DELETE", "/v1/me", tok); status != 204 {
		t.Errorf("the retry after Stripe came back: %d", status)
	}
}

// TestClerkWebhooks: signatures (good, forged, stale, missing, a rotated
// secret's two signatures), replays, ordering, unknown types and users,
// malformed events.
func TestClerkWebhooks(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_hooked")
	now := time.Now()

	id := msgID()
	ev := updated("user_hooked", "new@example.com", "newname", now)
	if status, body := e.deliver(id, ev, now, whsec); status != 200 || !strings.Contains(body, `"received":true`) {
		t.Fatalf("user.updated: %d %s", status, body)
	}
	if email, username, _ := e.row("user_hooked"); email != "new@example.com" || username != "newname" {
		t.Errorf("after user.updated: %q %q", email, username)
	}
	// The same delivery again (Svix retries) takes effect once: an update
	// made meanwhile through the token's claims stands.
	if _, err := e.db.Exec(context.Background(), `UPDATE users SET email = 'meanwhile@example.com' WHERE clerk_user_id = 'user_hooked'`); err != nil {
		t.Fatal(err)
	}
	if status, _ := e.deliver(id, ev, now, whsec); status != 200 {
		t.Errorf("a replayed delivery: %d", status)
	}
	if email, _, _ := e.row("user_hooked"); email != "meanwhile@example.com" {
		t.Errorf("a replayed delivery applied again: %q", email)
	}
	// An older event delivered late does not undo a newer one.
	if status, _ := e.deliver(msgID(), updated("user_hooked", "older@example.com", "oldname", now.Add(-time.Hour)), now, whsec); status != 200 {
		t.Errorf("an older event: %d", status)
	}
	if email, username, _ := e.row("user_hooked"); email != "meanwhile@example.com" || username != "newname" {
		t.Errorf("an older event was applied: %q %q", email, username)
	}
	// A rotated secret: the delivery carries a signature of each; the
	// gateway knows the new one.
	if status, body := e.deliver(msgID(), updated("user_hooked", "rotated@example.com", "newname", now.Add(time.Second)), now, oldWhsec, whsec); status != 200 {
		t.Errorf("two signatures, one good: %d %s", status, body)
	}

	// Refusals: 400, nothing written.
	before, _, _ := e.row("user_hooked")
	for name, c := range map[string]struct {
		payload  string
		signedAt time.Time
		secrets  []string
	}{
		"forged":          {updated("user_hooked", "evil@example.com", "evil", now.Add(time.Minute)), now, []string{oldWhsec}},
		"stale":           {updated("user_hooked", "evil@example.com", "evil", now.Add(time.Minute)), now.Add(-6 * time.Minute), []string{whsec}},
		"from the future": {updated("user_hooked", "evil@example.com", "evil", now.Add(time.Minute)), now.Add(6 * time.Minute), []string{whsec}},
		"unsigned":        {updated("user_hooked", "evil@example.com", "evil", now.Add(time.Minute)), now, nil},
		"malformed":       {`{"type":"user.updated","data":`, now, []string{whsec}},
		"no user id":      {`{"type":"user.deleted","data":{"deleted":true}}`, now, []string{whsec}},
	} {
		status, body := e.deliver(msgID(), c.payload, c.signedAt, c.secrets...)
		if status != 400 || !strings.Contains(body, `"bad_request"`) {
			t.Errorf("%s: %d %s", name, status, body)
		}
	}
	// A body changed after signing is a forgery too.
	id = msgID()
	wh, _ := svix.NewWebhook(whsec)
	sig, _ := wh.Sign(id, now, []byte(updated("user_hooked", "signed@example.com", "x", now.Add(time.Minute))))
	req, _ := http.NewRequest("POST", e.urls[0]+"/webhooks/clerk", strings.NewReader(updated("user_hooked", "evil@example.com", "x", now.Add(time.Minute))))
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", fmt.Sprint(now.Unix()))
	req.Header.Set("svix-signature", sig)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Errorf("a body changed after signing: %v %v", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}
	if email, _, _ := e.row("user_hooked"); email != before {
		t.Errorf("a refused delivery wrote %q", email)
	}

	// Accepted without effect: unknown types, unknown users.
	for name, payload := range map[string]string{
		"unknown type":              `{"object":"event","type":"session.created","data":{"id":"sess_1","user_id":"user_hooked"}}`,
		"update of an unknown user": updated("user_stranger", "stranger@example.com", "stranger", now),
	} {
		if status, body := e.deliver(msgID(), payload, now, whsec); status != 200 {
			t.Errorf("%s: %d %s", name, status, body)
		}
	}
	var strangers int
	_ = e.db.QueryRow(context.Background(), `SELECT count(*) FROM users WHERE clerk_user_id = 'user_stranger'`).Scan(&strangers)
	if strangers != 0 {
		t.Error("an update of an unknown user created them")
	}

	// user.deleted: erased and refused everywhere within 10 s; a later
	// (or replayed older) update does not bring anything back.
	if status, body := e.deliver(msgID(), deleted("user_hooked", now.Add(2*time.Second)), now, whsec); status != 200 {
		t.Fatalf("user.deleted: %d %s", status, body)
	}
	if email, username, st := e.row("user_hooked"); email != "" || username != "" || st != "deleted" {
		t.Errorf("after user.deleted: %q %q %q", email, username, st)
	}
	e.refusedEverywhere(tok)
	if status, _ := e.deliver(msgID(), updated("user_hooked", "zombie@example.com", "zombie", now.Add(time.Hour)), now, whsec); status != 200 {
		t.Errorf("an update after deletion: %d", status)
	}
	if email, _, st := e.row("user_hooked"); email != "" || st != "deleted" {
		t.Errorf("an update after deletion was applied: %q %q", email, st)
	}
	// Deleted at Clerk before the gateway ever saw them: recorded deleted,
	// so that a token issued before cannot create the account.
	if status, _ := e.deliver(msgID(), deleted("user_never_seen", now), now, whsec); status != 200 {
		t.Errorf("user.deleted of an unknown user: %d", status)
	}
	late := e.iss.Token(t, "user_never_seen", "sas-api", "ghost@example.com", "ghost", nil)
	if status, body := e.call(0, "GET", "/v1/me", late); status != 403 || !strings.Contains(body, `"account_deleted"`) {
		t.Errorf("a token of a user deleted at Clerk: %d %s", status, body)
	}
	if email, _, _ := e.row("user_never_seen"); email != "" {
		t.Errorf("the deleted user's token wrote their email: %q", email)
	}
}

// TestOutOfOrderPair: a user.deleted delivered before the user.updated
// that preceded it leaves the account deleted.
func TestOutOfOrderPair(t *testing.T) {
	e := newEnv(t)
	e.user("user_pair")
	now := time.Now()
	if status, _ := e.deliver(msgID(), deleted("user_pair", now), now, whsec); status != 200 {
		t.Fatal("user.deleted")
	}
	if status, _ := e.deliver(msgID(), updated("user_pair", "late@example.com", "late", now.Add(-time.Second)), now, whsec); status != 200 {
		t.Fatal("user.updated")
	}
	if email, _, st := e.row("user_pair"); email != "" || st != "deleted" {
		t.Errorf("after deleted, then the older updated: %q %q", email, st)
	}
}

// TestAccountVersionOrdersUpdates: two user.updated events whose times
// disagree — the event stamped later (timestamp) carries the older account
// state (data.updated_at) — leave the newer account state, in either
// delivery order: the account's own version orders updates, not the
// event's time.
func TestAccountVersionOrdersUpdates(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	// newer: the account as changed last, in an event stamped first.
	newer := func(sub string) string {
		return updatedAt(sub, "newer@example.com", "newer", now, now.Add(2*time.Second))
	}
	// older: the account as it was before, in an event stamped last.
	older := func(sub string) string {
		return updatedAt(sub, "older@example.com", "older", now.Add(3*time.Second), now.Add(time.Second))
	}
	for _, tc := range []struct {
		name string
		sub  string
		// order of the deliveries
		events []func(sub string) string
	}{
		{"newer state delivered first", "user_versions_a", []func(string) string{newer, older}},
		{"newer state delivered last", "user_versions_b", []func(string) string{older, newer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.user(tc.sub)
			for i, ev := range tc.events {
				if status, body := e.deliver(msgID(), ev(tc.sub), now, whsec); status != 200 {
					t.Fatalf("delivery %d: %d %s", i+1, status, body)
				}
			}
			email, username, _ := e.row(tc.sub)
			if diff := cmp.Diff([]string{"newer@example.com", "newer"}, []string{email, username}); diff != "" {
				t.Errorf("email and username (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWebhooksOff: without CLERK_WEBHOOK_SECRET the route answers 404.
func TestWebhooksOff(t *testing.T) {
	d := testenv.NewDatabase(t)
	iss := testenv.NewIssuer(t, "RS256", nil)
	gw, err := app.New(context.Background(), config.Config{Issuer: iss.Issuer(), Audiences: []string{"sas-api"}, DatabaseURL: d.URL,
		RedisURL: testenv.RedisURL(t)}, slog.New(slog.DiscardHandler), app.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	srv := httptest.NewServer(testenv.OpenAPI(t, gw.Handler))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/webhooks/clerk", "application/json", strings.NewReader(deleted("user_x", time.Now())))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("webhook without a secret: %d", resp.StatusCode)
	}
}

// TestDeletedAtClerkEndsTheSubscription (found in review): a user deleted
// at Clerk stops paying — user.deleted cancels their subscriptions and
// expires their open checkouts, before the event is recorded, so that a
// Stripe outage makes Svix deliver it again rather than lose it — and the
// deleted user may still call DELETE /v1/me, which runs every step again.
func TestDeletedAtClerkEndsTheSubscription(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_gone_at_clerk")
	if status, body := e.call(0, "POST", "/v1/billing/checkout", tok); status != 200 {
		t.Fatalf("checkout: %d %s", status, body)
	}
	now := time.Now()
	id, ev := msgID(), deleted("user_gone_at_clerk", now)
	e.stripe.fail.Store(2) // its client retries once: fail both tries
	if status, body := e.deliver(id, ev, now, whsec); status != 503 || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("user.deleted with Stripe down: %d %s", status, body)
	}
	if _, _, st := e.row("user_gone_at_clerk"); st != "active" {
		t.Errorf("user.deleted that could not cancel the subscription was applied: %q", st)
	}
	// Svix delivers it again, with the same id.
	if status, body := e.deliver(id, ev, now, whsec); status != 200 {
		t.Fatalf("the redelivery: %d %s", status, body)
	}
	if n, _ := e.stripe.called("DELETE /v1/subscriptions/"); n == 0 {
		t.Errorf("user.deleted cancelled no subscription; Stripe calls: %v", e.stripe.calls)
	}
	if email, _, st := e.row("user_gone_at_clerk"); st != "deleted" || email != "" {
		t.Errorf("after user.deleted: %q %q", email, st)
	}
	e.refusedEverywhere(tok)
	before, _ := e.stripe.called("DELETE /v1/subscriptions/")
	if status, body := e.call(1, "DELETE", "/v1/me", tok); status != 204 {
		t.Fatalf("DELETE /v1/me of an account deleted at Clerk: %d %s", status, body)
	}
	if after, _ := e.stripe.called("DELETE /v1/subscriptions/"); after <= before {
		t.Error("DELETE /v1/me of a deleted account did not run the Stripe step again")
	}
}

// TestStandardWebhookHeaders (found in review): the Svix library also
// verifies deliveries whose headers are named webhook-id, -timestamp and
// -signature; each must be recorded under its own id, not under "" (which
// made every such delivery after the first a "duplicate").
func TestStandardWebhookHeaders(t *testing.T) {
	e := newEnv(t)
	e.user("user_std_a")
	e.user("user_std_b")
	now := time.Now()
	for _, sub := range []string{"user_std_a", "user_std_b"} {
		if status, body := e.deliverAs("webhook-", msgID(), deleted(sub, now), now, whsec); status != 200 {
			t.Fatalf("%s: %d %s", sub, status, body)
		}
		if _, _, st := e.row(sub); st != "deleted" {
			t.Errorf("%s after user.deleted with webhook-* headers: %q", sub, st)
		}
	}
	var empty int
	_ = e.db.QueryRow(context.Background(), `SELECT count(*) FROM clerk_events WHERE svix_id = ''`).Scan(&empty)
	if empty != 0 {
		t.Errorf("%d deliveries recorded under an empty id", empty)
	}
}

// stripeEvent posts a customer.subscription.created event, signed as
// Stripe signs them, for an active pro subscription of user.
func (e *env) stripeEvent(id, subID, user string) (int, string) {
	e.t.Helper()
	payload := fmt.Sprintf(`{"id":%q,"object":"event","type":"customer.subscription.created","created":%d,"api_version":"2020-08-27",
		"data":{"object":{"id":%q,"object":"subscription","customer":"cus_late","status":"active","metadata":{"clerk_user_id":%q},
		"items":{"object":"list","data":[{"id":"si_1","object":"subscription_item","price":{"id":"price_pro","object":"price"}}]}}}}`,
		id, time.Now().Unix(), subID, user)
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: []byte(payload), Secret: "whsec_stripe", Timestamp: time.Now()})
	req, _ := http.NewRequest("POST", e.urls[0]+"/webhooks/stripe", strings.NewReader(payload))
	req.Header.Set("Stripe-Signature", signed.Header)
	req.Header.Set("Content-Type", "application/json")
	return testenv.Do(e.t, req)
}

// TestLateSubscriptionOfADeletedAccount: a subscription that starts after
// the account was deleted (a checkout page paid in the moment before its
// expiry) is cancelled at Stripe when its event arrives and never makes
// the account pro; with Stripe down the event is refused (5xx) unrecorded,
// so that Stripe delivers it again.
func TestLateSubscriptionOfADeletedAccount(t *testing.T) {
	e := newEnv(t)
	tok := e.user("user_late_sub")
	if status, body := e.call(0, "DELETE", "/v1/me", tok); status != 204 {
		t.Fatalf("DELETE /v1/me: %d %s", status, body)
	}
	e.stripe.fail.Store(2)
	if status, body := e.stripeEvent("evt_late_1", "sub_late", "user_late_sub"); status/100 != 5 {
		t.Fatalf("with Stripe down: %d %s, want a 5xx (Stripe retries those)", status, body)
	}
	if status, body := e.stripeEvent("evt_late_1", "sub_late", "user_late_sub"); status != 200 {
		t.Fatalf("the redelivery: %d %s", status, body)
	}
	if n, _ := e.stripe.called("DELETE /v1/subscriptions/sub_late"); n != 3 { // two failed tries, then done
		t.Errorf("the late subscription: %d cancel calls, want 3; Stripe calls: %v", n, e.stripe.calls)
	}
	var plan, status string
	if err := e.db.QueryRow(context.Background(), `SELECT plan, status FROM users WHERE clerk_user_id = 'user_late_sub'`).Scan(&plan, &status); err != nil {
		t.Fatal(err)
	}
	if plan != "free" || status != "deleted" {
		t.Errorf("after a late subscription: plan %q, status %q", plan, status)
	}
}
