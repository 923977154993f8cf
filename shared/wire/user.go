package wire

// Plans and statuses a user can have (contract, "Database").
const (
	PlanFree = "free"
	PlanPro  = "pro"

	StatusActive    = "active"
	StatusSuspended = "suspended"
	// StatusDeleted: the account was deleted (DELETE /v1/me, or in Clerk);
	// its email and username are erased.
	StatusDeleted = "deleted"
)

// Me is the body of GET /v1/me.
type Me struct {
	ID       string `json:"id"` // the Clerk user id (the token's sub)
	Email    string `json:"email"`
	Username string `json:"username"`
	Plan     string `json:"plan"`
	Status   string `json:"status"`
}

// Health is the body of GET /healthz and GET /readyz.
type Health struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}
