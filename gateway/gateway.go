// Package gateway holds the domain types of the SAS gateway: who a caller is
// (Identity, from a verified token) and what we know about them (User, from
// the database). Technology lives in subpackages: auth (token verification),
// postgres (user store), httpapi (routes), devidp (local identity provider).
package gateway

import (
	_ "embed"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/signals-sorcery/sas/shared/wire"
)

// Identity is what a verified token says about its bearer.
type Identity struct {
	Subject  string    // Clerk user id (sub)
	Email    string    // may be empty
	Username string    // username, else preferred_username, else name
	Expiry   time.Time // token exp
}

// Changes reports whether the identity's claims would change u: a claim
// the token carries that differs from what is stored. A missing claim
// (empty) changes nothing: it never erases a stored email or username. A
// deleted account never takes claims again (a token issued before the
// deletion may still be valid).
func (id Identity) Changes(u User) bool {
	if u.Deleted() {
		return false
	}
	return (id.Email != "" && id.Email != u.Email) || (id.Username != "" && id.Username != u.Username)
}

// User is a row of the users table.
type User struct {
	ClerkUserID string
	Email       string
	Username    string
	Plan        string // wire.PlanFree or wire.PlanPro
	Status      string // wire.StatusActive, StatusSuspended or StatusDeleted
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Me returns the GET /v1/me view of u.
func (u User) Me() wire.Me {
	return wire.Me{ID: u.ClerkUserID, Email: u.Email, Username: u.Username, Plan: u.Plan, Status: u.Status}
}

// Active reports whether u may use the /v1 API.
func (u User) Active() bool { return u.Status == wire.StatusActive }

// ValidPlan reports whether p is a plan the database accepts.
func ValidPlan(p string) bool { return p == wire.PlanFree || p == wire.PlanPro }

// Deleted reports whether u's account was deleted.
func (u User) Deleted() bool { return u.Status == wire.StatusDeleted }

// ValidStatus reports whether s is a status the database accepts.
func ValidStatus(s string) bool {
	return s == wire.StatusActive || s == wire.StatusSuspended || s == wire.StatusDeleted
}

// Account event types: the Clerk webhook events the gateway applies.
const (
	AccountUpdated = "user.updated"
	AccountDeleted = "user.deleted"
)

// AccountEvent is a Clerk webhook event about a user's account.
type AccountEvent struct {
	ID          string // the delivery's svix-id: applied once
	Type        string // AccountUpdated or AccountDeleted
	ClerkUserID string
	// Email and Username are the account's (user.updated; empty: unknown,
	// nothing erased).
	Email, Username string
	At              time.Time // when the account changed: orders the events
}

// OpenAPI is the gateway's OpenAPI 3.1 description (openapi.yaml), served
// at /openapi.yaml and checked against every response the tests receive.
//
//go:embed openapi.yaml
var OpenAPI []byte

// UsageEvent is one metered request as the usage ledger keeps it: what the
// upstream was asked, what it cost, and how the figures were obtained.
// Settlement appends it to the Redis usage stream in the same atomic step
// as the charge; the ledger drains the stream into Postgres.
type UsageEvent struct {
	// ID is unique per admitted request (the ledger's idempotency key);
	// RequestID is the X-Request-Id, for finding the log lines.
	ID, RequestID string
	ClerkUserID   string
	Model         string
	Endpoint      string // "chat.completions" or "responses"
	// InputTokens include CachedInputTokens, as OpenAI reports them.
	InputTokens, CachedInputTokens, OutputTokens int64
	CostMicros                                   int64  // US dollars × 10⁶
	Source                                       string // "upstream" (reported usage) or "reservation"
	Outcome                                      string // complete, client_gone, upstream_cut, idle_timeout, refused
	Stream                                       bool
	At                                           time.Time // settlement time
	// Upstream is the name of the upstream that served the request, as
	// the upstream table names it ("openai"); "" when none did or it is
	// not known (an event written before upstreams were recorded).
	Upstream string
	// Attempts is how many upstreams were tried for the request, failed
	// attempts included (at most 3); 0 when none was tried or it is not
	// known.
	Attempts int
	// Template and TemplateVersion name the prompt template the request
	// ran ("" and 0: a raw request).
	Template        string
	TemplateVersion int
}

// UserChange is a user whose row a transaction changed, and that change's
// stamp (its transaction's id, opaque): the change feed forgets a user
// once per stamp.
type UserChange struct {
	ClerkUserID, Stamp string
}

// UsageFigures are the sums of some usage events: GET /v1/usage's day,
// model and total entries.
type UsageFigures struct {
	Requests          int64 `json:"requests"`
	InputTokens       int64 `json:"input_tokens"`
	CachedInputTokens int64 `json:"cached_input_tokens"`
	OutputTokens      int64 `json:"output_tokens"`
	CostMicros        int64 `json:"-"`
}

// Add adds f's figures to u.
func (u *UsageFigures) Add(f UsageFigures) {
	u.Requests += f.Requests
	u.InputTokens += f.InputTokens
	u.CachedInputTokens += f.CachedInputTokens
	u.OutputTokens += f.OutputTokens
	u.CostMicros += f.CostMicros
}

// ModelUsage is one model's usage of one day.
type ModelUsage struct {
	Model string
	UsageFigures
}

// DayUsage is one UTC day's usage, per model.
type DayUsage struct {
	Date   time.Time // 00:00 UTC
	Models []ModelUsage
}

// MaxWebhookBytes bounds a webhook body: Stripe's and Clerk's events are a
// few KB.
const MaxWebhookBytes = 256 << 10

// ReadWebhook reads a webhook's body. Errors: payload_too_large over
// MaxWebhookBytes, bad_request when it cannot be read.
func ReadWebhook(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxWebhookBytes))
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, wire.Errorf(wire.CodePayloadTooLarge, "The webhook body is over %d KiB.", MaxWebhookBytes>>10)
	}
	if err != nil {
		return nil, wire.Wrap(wire.CodeBadRequest, "The webhook body could not be read.", err)
	}
	return body, nil
}
