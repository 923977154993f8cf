package devidp

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
)

// userFor makes Clerk-shaped user ids that stay the same for an email, so
// signing in again as the same person is the same user — until that user
// is deleted (the Backend API stand-in): then, as at Clerk, signing up
// again with the email makes a new user.
func (p *Provider) userFor(email, username string) user {
	key := strings.ToLower(email)
	p.grants.mu.Lock()
	defer p.grants.mu.Unlock()
	seed := key
	if n := p.grants.generation[key]; n > 0 {
		seed += "#" + strconv.Itoa(n)
	}
	h := sha256.Sum256([]byte(seed))
	u := user{sub: "user_" + hex.EncodeToString(h[:12]), email: email, username: username}
	p.grants.emails[u.sub] = key
	return u
}

// deleteUser is the stand-in for Clerk's Backend API user deletion
// (DELETE /v1/users/{id}, Authorization: Bearer <secret key>): the user's
// refresh and access tokens stop working (ID tokens already issued stay
// valid until they expire, as Clerk's do), and the email signs up as a new
// user next time. Answers as Clerk does: 200 with a deleted object, 404
// for an unknown user, 401 for a wrong key.
func (p *Provider) deleteUser(w http.ResponseWriter, r *http.Request) {
	key := p.opts.SecretKey
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if key == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
		clerkError(w, http.StatusUnauthorized, "authorization_invalid", "The secret key is missing or wrong.")
		return
	}
	sub := r.PathValue("id")
	p.grants.mu.Lock()
	email, known := p.grants.emails[sub]
	if known {
		delete(p.grants.emails, sub)
		p.grants.generation[email]++
		p.grants.deletions++
		for t, g := range p.grants.refresh {
			if g.user.sub == sub {
				delete(p.grants.refresh, t)
			}
		}
		for t, g := range p.grants.access {
			if g.user.sub == sub {
				delete(p.grants.access, t)
			}
		}
	}
	p.grants.mu.Unlock()
	if !known {
		clerkError(w, http.StatusNotFound, "resource_not_found", "No user with this id.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "user", "id": sub, "deleted": true})
}

// Deletions returns how many users the Backend API stand-in deleted.
func (p *Provider) Deletions() int {
	p.grants.mu.Lock()
	defer p.grants.mu.Unlock()
	return p.grants.deletions
}

// clerkError writes the Backend API's error shape.
func clerkError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"code": code, "message": message, "long_message": message}}})
}
