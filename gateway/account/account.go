// Package account ends accounts. DELETE /v1/me cancels the user's Stripe
// subscriptions at once, erases their email and username and marks them
// deleted, then deletes the user at Clerk (Backend API). Each step is
// idempotent and a deleted user may call DELETE /v1/me again (it runs every
// step again), so a retry after an outage finishes the job — and the
// personal data is gone here even while Clerk is unreachable. Clerk's
// account webhooks (user.updated, user.deleted, signed by Svix) keep the
// stored email and username current and delete accounts removed at Clerk,
// their subscriptions included.
package account

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Store keeps the accounts.
type Store interface {
	// DeleteUser erases the user's email and username and marks them
	// deleted. Errors: not_found, unavailable.
	DeleteUser(ctx context.Context, clerkUserID string) (gateway.User, error)
	// ApplyAccountEvent applies a Clerk account event once per delivery
	// id, reporting false for a duplicate. Errors: unavailable.
	ApplyAccountEvent(ctx context.Context, ev gateway.AccountEvent) (bool, error)
}

// Subscriptions cancels a user's Stripe subscriptions and expires their
// open checkouts (billing.Service).
type Subscriptions interface {
	CancelSubscriptions(ctx context.Context, clerkUserID string) error
}

// Options configure a Service.
type Options struct {
	Store Store
	// Subscriptions, when set, cancels the user's subscriptions first.
	Subscriptions Subscriptions
	// ClerkSecretKey (sk_…), when set, deletes the user at Clerk through
	// the Backend API at ClerkAPIURL (default https://api.clerk.com).
	ClerkSecretKey, ClerkAPIURL string
	// WebhookSecret (whsec_…) verifies Clerk's webhooks; empty: the
	// webhook route answers not_found.
	WebhookSecret string
	HTTPClient    *http.Client
	Logger        *slog.Logger
}

// DefaultClerkAPIURL is Clerk's Backend API.
const DefaultClerkAPIURL = "https://api.clerk.com"

// Service deletes accounts and applies Clerk's account webhooks.
type Service struct {
	o       Options
	webhook *svix.Webhook // nil without a webhook secret
}

// New returns a Service. Errors: a webhook secret that is not a Svix
// signing secret (whsec_ and base64).
func New(o Options) (*Service, error) {
	o.ClerkAPIURL = strings.TrimSuffix(cmp.Or(o.ClerkAPIURL, DefaultClerkAPIURL), "/")
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{o: o}
	if o.WebhookSecret != "" {
		wh, err := svix.NewWebhook(o.WebhookSecret)
		if err != nil {
			return nil, errors.New("CLERK_WEBHOOK_SECRET is not a Svix signing secret (whsec_ followed by base64)")
		}
		s.webhook = wh
	}
	return s, nil
}

// Delete deletes u's account (u may be deleted already: every step runs
// again): Stripe subscriptions cancelled, then the email and username
// erased and the status set to deleted, then the Clerk user deleted. A
// step that fails stops it with unavailable, and what was done is done
// again harmlessly by the retry.
//
// Errors: unavailable (Stripe, Clerk or the database could not be reached).
func (s *Service) Delete(ctx context.Context, u gateway.User) error {
	if err := s.cancelSubscriptions(ctx, u.ClerkUserID); err != nil {
		return unavailable("The payment provider could not cancel the subscription; nothing was deleted. Try again shortly.", err)
	}
	if _, err := s.o.Store.DeleteUser(ctx, u.ClerkUserID); err != nil && wire.ErrorCode(err) != wire.CodeNotFound {
		return err
	}
	if s.o.ClerkSecretKey != "" {
		if err := s.deleteAtClerk(ctx, u.ClerkUserID); err != nil {
			s.o.Logger.Warn("account deleted here, not yet at Clerk: the client's retry finishes it", "user", u.ClerkUserID, "err", err)
			return unavailable("The account is deleted here, but the identity provider could not delete the sign-in account; try again shortly to finish.", err)
		}
	}
	s.o.Logger.Info("account deleted", "user", u.ClerkUserID, "deleted_at_clerk", s.o.ClerkSecretKey != "")
	return nil
}

func (s *Service) cancelSubscriptions(ctx context.Context, clerkUserID string) error {
	if s.o.Subscriptions == nil {
		return nil
	}
	return s.o.Subscriptions.CancelSubscriptions(ctx, clerkUserID)
}

func unavailable(msg string, err error) error {
	return &wire.Error{Code: wire.CodeUnavailable, Message: msg, RetryAfter: 5, Err: err}
}

// deleteAtClerk deletes the user through the Backend API; a user Clerk no
// longer has counts as deleted.
func (s *Service) deleteAtClerk(ctx context.Context, clerkUserID string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.o.ClerkAPIURL+"/v1/users/"+url.PathEscape(clerkUserID), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.o.ClerkSecretKey)
	resp, err := s.o.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode/100 == 2, resp.StatusCode == http.StatusNotFound:
		return nil
	default:
		return errors.New("Clerk's Backend API answered " + resp.Status)
	}
}

// Webhook verifies and applies one Clerk webhook delivery. Forged, stale
// (over 5 minutes), malformed or replayed-with-a-new-body deliveries are
// bad_request; a duplicate delivery, an unknown type or an unknown user is
// accepted (nil) without effect, except that user.deleted of an unknown
// user records it deleted.
//
// Errors: not_found (no webhook secret configured), bad_request,
// payload_too_large, unavailable.
func (s *Service) Webhook(r *http.Request) error {
	if s.webhook == nil {
		return wire.Errorf(wire.CodeNotFound, "Clerk webhooks are not configured (CLERK_WEBHOOK_SECRET).")
	}
	body, err := gateway.ReadWebhook(r)
	if err != nil {
		return err
	}
	if err := s.webhook.Verify(body, r.Header); err != nil {
		return wire.Wrap(wire.CodeBadRequest, "The webhook signature is missing, stale or wrong.", err)
	}
	id, timestamp := deliveryHeaders(r.Header)
	ev, ok, err := parseEvent(body, id, timestamp)
	if err != nil || !ok {
		return err
	}
	if ev.Type == gateway.AccountDeleted {
		// Before the event is recorded: if Stripe fails, Svix retries the
		// delivery, and it is not a duplicate yet. A repeated delivery
		// cancels nothing more.
		if err := s.cancelSubscriptions(r.Context(), ev.ClerkUserID); err != nil {
			return unavailable("The payment provider could not cancel the subscription; deliver the event again.", err)
		}
	}
	applied, err := s.o.Store.ApplyAccountEvent(r.Context(), ev)
	if err != nil {
		return err
	}
	if applied {
		s.o.Logger.Info("Clerk account event applied", "type", ev.Type, "user", ev.ClerkUserID)
	}
	return nil
}

// deliveryHeaders returns the delivery id and timestamp from the header set
// the Svix library verified: svix-* when all three are there, else
// webhook-* (the Standard Webhooks names).
func deliveryHeaders(h http.Header) (id, timestamp string) {
	if h.Get("svix-id") != "" && h.Get("svix-timestamp") != "" && h.Get("svix-signature") != "" {
		return h.Get("svix-id"), h.Get("svix-timestamp")
	}
	return h.Get("webhook-id"), h.Get("webhook-timestamp")
}

// clerkEvent is the part of Clerk's webhook envelope the gateway reads.
type clerkEvent struct {
	Type      string          `json:"type"`
	Timestamp json.Number     `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

type clerkUser struct {
	ID                    string      `json:"id"`
	Username              string      `json:"username"`
	FirstName             string      `json:"first_name"`
	LastName              string      `json:"last_name"`
	PrimaryEmailAddressID string      `json:"primary_email_address_id"`
	UpdatedAt             json.Number `json:"updated_at"` // ms
	EmailAddresses        []struct {
		ID           string `json:"id"`
		EmailAddress string `json:"email_address"`
	} `json:"email_addresses"`
}

// parseEvent reads a verified delivery; ok is false for a type the gateway
// does not apply.
func parseEvent(body []byte, svixID, svixTimestamp string) (ev gateway.AccountEvent, ok bool, err error) {
	malformed := func(why string) error {
		return wire.Errorf(wire.CodeBadRequest, "The webhook event is malformed: %s.", why)
	}
	var e clerkEvent
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&e); err != nil || e.Type == "" {
		return ev, false, malformed("not a Clerk event")
	}
	if e.Type != gateway.AccountUpdated && e.Type != gateway.AccountDeleted {
		return ev, false, nil
	}
	var u clerkUser
	if err := json.Unmarshal(e.Data, &u); err != nil || u.ID == "" {
		return ev, false, malformed("no user id in data")
	}
	ev = gateway.AccountEvent{ID: svixID, Type: e.Type, ClerkUserID: u.ID}
	// The account's own version orders updates; else the event's time,
	// else the delivery's signed timestamp.
	ev.At = cmp.Or(epoch(u.UpdatedAt), epoch(e.Timestamp), epoch(json.Number(svixTimestamp)))
	if e.Type == gateway.AccountUpdated {
		for _, a := range u.EmailAddresses {
			if a.ID == u.PrimaryEmailAddressID || ev.Email == "" {
				ev.Email = a.EmailAddress
			}
		}
		ev.Username = cmp.Or(u.Username, strings.TrimSpace(u.FirstName+" "+u.LastName))
	}
	return ev, true, nil
}

// epoch reads a Unix time in seconds or milliseconds (Clerk's payloads use
// both); zero when absent or unreadable.
func epoch(n json.Number) time.Time {
	v, err := strconv.ParseInt(n.String(), 10, 64)
	switch {
	case err != nil || v <= 0:
		return time.Time{}
	case v > 1e11: // after 5138 in seconds: milliseconds
		return time.UnixMilli(v).UTC()
	default:
		return time.Unix(v, 0).UTC()
	}
}
