// Package gateway holds the domain types of the SAS gateway: who a caller is
// (Identity, from a verified token) and what we know about them (User, from
// the database). Technology lives in subpackages: auth (token verification),
// postgres (user store), httpapi (routes), devidp (local identity provider).
package gateway

import (
	_ "embed"
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

// User is a row of the users table.
type User struct {
	ClerkUserID string
	Email       string
	Username    string
	Plan        string // wire.PlanFree or wire.PlanPro
	Status      string // wire.StatusActive or wire.StatusSuspended
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

// ValidStatus reports whether s is a status the database accepts.
func ValidStatus(s string) bool { return s == wire.StatusActive || s == wire.StatusSuspended }

// OpenAPI is the gateway's OpenAPI 3.1 description (openapi.yaml), served
// at /openapi.yaml and checked against every response the tests receive.
//
//go:embed openapi.yaml
var OpenAPI []byte
