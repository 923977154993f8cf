package wire

import "cmp"

// ProfileClaims are the ID-token claims that say who a user is. The
// gateway, sas-login and the sidecar all read them the same way.
type ProfileClaims struct {
	Email             string `json:"email"`
	Username          string `json:"username"`
	PreferredUsername string `json:"preferred_username"`
	Name              string `json:"name"`
}

// DisplayUsername applies the contract's rule: username, else
// preferred_username, else name.
func (c ProfileClaims) DisplayUsername() string {
	return cmp.Or(c.Username, c.PreferredUsername, c.Name)
}
