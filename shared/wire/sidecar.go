package wire

import "time"

// SidecarUser is who is signed in, as the sidecar and `sas-login status`
// report it (no token, ever).
type SidecarUser struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Username string `json:"username"`
}

// SidecarStatus is the sidecar's `status` result and the body of
// `sas-login status --json` (which adds "profile").
type SidecarStatus struct {
	SignedIn  bool         `json:"signedIn"`
	User      *SidecarUser `json:"user"`
	ExpiresAt *time.Time   `json:"expiresAt"`
	Profile   string       `json:"profile,omitempty"`
}
