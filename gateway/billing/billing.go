// Package billing is the Stripe side of plans: Checkout to upgrade to pro,
// the customer portal to manage it, and the webhook whose events keep the
// users' plans right — applied once per event id, from the payloads alone,
// in the order of their creation whatever the delivery order.
package billing

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/stripe/stripe-go/v84"
	"github.com/stripe/stripe-go/v84/webhook"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/postgres"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Options configure the Service.
type Options struct {
	APIKey        string
	WebhookSecret string
	ProPriceID    string
	APIBase       string // without /v1; empty: Stripe's
	ReturnURL     string
	DB            *postgres.DB
	HTTPClient    *http.Client
	Logger        *slog.Logger
}

// Service serves the billing routes.
type Service struct {
	o      Options
	stripe *stripe.Client
}

// New returns the Service.
func New(o Options) *Service {
	cfg := &stripe.BackendConfig{HTTPClient: o.HTTPClient, MaxNetworkRetries: stripe.Int64(1)}
	if o.APIBase != "" {
		cfg.URL = stripe.String(o.APIBase)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	backends := &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	}
	return &Service{o: o, stripe: stripe.NewClient(o.APIKey, stripe.WithBackends(backends))}
}

func stripeError(err error) error {
	return wire.Wrap(wire.CodeUpstreamError, "The payment provider could not be reached; try again.", err)
}

// Checkout returns the URL of a Checkout Session (subscription to the pro
// price) for u, creating u's Stripe customer the first time.
//
// Errors: upstream_error, unavailable.
func (s *Service) Checkout(ctx context.Context, u gateway.User) (string, error) {
	b, err := s.o.DB.Billing(ctx, u.ClerkUserID)
	if err != nil {
		return "", err
	}
	if u.Plan == wire.PlanPro && b.SubscriptionID != "" {
		return "", wire.Errorf(wire.CodeConflict, "This account is already pro: manage the subscription in the customer portal.")
	}
	customer := b.CustomerID
	if customer == "" {
		params := &stripe.CustomerCreateParams{
			Email:    stripe.String(u.Email),
			Name:     stripe.String(u.Username),
			Metadata: map[string]string{"clerk_user_id": u.ClerkUserID},
		}
		// Concurrent or retried checkouts of one user create one customer
		// at Stripe (idempotency keys last 24 h); the database keeps one.
		params.SetIdempotencyKey("sas-customer-" + u.ClerkUserID)
		c, err := s.stripe.V1Customers.Create(ctx, params)
		if err != nil {
			return "", stripeError(err)
		}
		// A concurrent checkout may have recorded its customer first: use it.
		if customer, err = s.o.DB.SetStripeCustomer(ctx, u.ClerkUserID, c.ID); err != nil {
			return "", err
		}
	}
	sess, err := s.stripe.V1CheckoutSessions.Create(ctx, &stripe.CheckoutSessionCreateParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		Customer:          stripe.String(customer),
		ClientReferenceID: stripe.String(u.ClerkUserID),
		LineItems:         []*stripe.CheckoutSessionCreateLineItemParams{{Price: stripe.String(s.o.ProPriceID), Quantity: stripe.Int64(1)}},
		SubscriptionData: &stripe.CheckoutSessionCreateSubscriptionDataParams{
			Metadata: map[string]string{"clerk_user_id": u.ClerkUserID},
		},
		SuccessURL: stripe.String(s.o.ReturnURL),
		CancelURL:  stripe.String(s.o.ReturnURL),
	})
	if err != nil {
		return "", stripeError(err)
	}
	return sess.URL, nil
}

// Portal returns the URL of a customer-portal session for u.
//
// Errors: conflict (no Stripe customer yet), upstream_error, unavailable.
func (s *Service) Portal(ctx context.Context, u gateway.User) (string, error) {
	b, err := s.o.DB.Billing(ctx, u.ClerkUserID)
	if err != nil {
		return "", err
	}
	if b.CustomerID == "" {
		return "", wire.Errorf(wire.CodeConflict, "There is no subscription to manage yet: upgrade first.")
	}
	sess, err := s.stripe.V1BillingPortalSessions.Create(ctx, &stripe.BillingPortalSessionCreateParams{
		Customer: stripe.String(b.CustomerID), ReturnURL: stripe.String(s.o.ReturnURL),
	})
	if err != nil {
		return "", stripeError(err)
	}
	return sess.URL, nil
}

// CancelSubscriptions expires the open Checkout Sessions of the user's
// Stripe customer (so that a checkout page left open cannot start a
// subscription afterwards), then cancels at once, without proration or a
// final invoice, every subscription of that customer that is not
// cancelled yet (account deletion). A user without a customer has nothing
// to cancel; a session or subscription gone meanwhile counts as done, so a
// retry finishes what an outage interrupted. The webhook then brings the
// plan down as for any cancellation.
//
// Errors: upstream_error, unavailable.
func (s *Service) CancelSubscriptions(ctx context.Context, clerkUserID string) error {
	b, err := s.o.DB.Billing(ctx, clerkUserID)
	if err != nil || b.CustomerID == "" {
		if wire.ErrorCode(err) == wire.CodeNotFound {
			return nil
		}
		return err
	}
	open := &stripe.CheckoutSessionListParams{Customer: stripe.String(b.CustomerID), Status: stripe.String("open")}
	for cs, err := range s.stripe.V1CheckoutSessions.List(ctx, open) {
		if err != nil {
			return stripeError(err)
		}
		if _, err := s.stripe.V1CheckoutSessions.Expire(ctx, cs.ID, &stripe.CheckoutSessionExpireParams{}); err != nil && !gone(err) {
			return stripeError(err)
		}
	}
	params := &stripe.SubscriptionListParams{Customer: stripe.String(b.CustomerID), Status: stripe.String("all")}
	for sub, err := range s.stripe.V1Subscriptions.List(ctx, params) {
		if err != nil {
			return stripeError(err)
		}
		if sub.Status == stripe.SubscriptionStatusCanceled || sub.Status == stripe.SubscriptionStatusIncompleteExpired {
			continue
		}
		_, err := s.stripe.V1Subscriptions.Cancel(ctx, sub.ID, &stripe.SubscriptionCancelParams{})
		if gone(err) {
			continue
		}
		if err != nil {
			return stripeError(err)
		}
		s.o.Logger.Info("subscription cancelled: account deleted", "subscription", sub.ID)
	}
	return nil
}

// gone reports a Stripe object that no longer exists or can no longer
// change (cancelled or expired meanwhile): what the caller wanted is done.
func gone(err error) bool {
	se, ok := errors.AsType[*stripe.Error](err)
	return ok && (se.Code == stripe.ErrorCodeResourceMissing || se.HTTPStatusCode == http.StatusNotFound)
}

// Tolerance is how old a webhook's signed timestamp may be.
const Tolerance = 300 * time.Second

// Webhook verifies and applies one Stripe event. It answers errors only
// for the sender's mistakes (bad signature, stale timestamp, malformed
// JSON: 400) and outages (503, so that Stripe retries); an event for no
// known user, a duplicate or an ignored type is recorded and answered 200.
func (s *Service) Webhook(r *http.Request) error {
	body, err := gateway.ReadWebhook(r)
	if err != nil {
		return err
	}
	ev, err := webhook.ConstructEventWithOptions(body, r.Header.Get("Stripe-Signature"), s.o.WebhookSecret,
		webhook.ConstructEventOptions{Tolerance: Tolerance, IgnoreAPIVersionMismatch: true})
	if err != nil {
		// Signature, timestamp and JSON failures alike: the error says which
		// for the log, never the secret.
		return &wire.Error{Code: wire.CodeBadRequest, Message: "The webhook signature, timestamp or body is invalid.", Reason: "webhook", Err: err}
	}
	created := time.Unix(ev.Created, 0)
	var changed []string
	applied, err := s.o.DB.WithBillingEvent(r.Context(), ev.ID, string(ev.Type), created, func(tx postgres.BillingTx) error {
		var err error
		changed, err = s.apply(r.Context(), tx, ev, created)
		return err
	})
	if err != nil {
		return err
	}
	s.o.Logger.Info("stripe event", "id", ev.ID, "type", ev.Type, "duplicate", !applied, "plan_changes", len(changed))
	return nil
}

// apply applies an event's effect and returns the users whose plan changed.
func (s *Service) apply(ctx context.Context, tx postgres.BillingTx, ev stripe.Event, created time.Time) ([]string, error) {
	switch ev.Type {
	case "checkout.session.completed":
		var cs struct {
			ClientReferenceID string          `json:"client_reference_id"`
			Customer          json.RawMessage `json:"customer"`
			Subscription      json.RawMessage `json:"subscription"`
		}
		if err := json.Unmarshal(ev.Data.Raw, &cs); err != nil {
			return nil, malformed(err)
		}
		if ok, err := tx.UserExists(ctx, cs.ClientReferenceID); err != nil || !ok {
			return nil, err
		}
		return nil, tx.LinkCheckout(ctx, cs.ClientReferenceID, idOf(cs.Customer), idOf(cs.Subscription))
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted":
		var sub stripe.Subscription
		if err := json.Unmarshal(ev.Data.Raw, &sub); err != nil {
			return nil, malformed(err)
		}
		user, err := s.subscriber(ctx, tx, &sub)
		if err != nil || user == "" {
			return nil, err
		}
		deleted := ev.Type == "customer.subscription.deleted"
		rank := map[stripe.EventType]int{"customer.subscription.created": postgres.RankCreated,
			"customer.subscription.updated": postgres.RankUpdated, "customer.subscription.deleted": postgres.RankDeleted}[ev.Type]
		plan := wire.PlanFree
		live := !deleted && sub.Status != stripe.SubscriptionStatusCanceled && sub.Status != stripe.SubscriptionStatusIncompleteExpired
		if live {
			// A subscription of a deleted account (a checkout page paid after
			// the deletion expired the open ones): cancelled, never pro. In the
			// transaction, so that a Stripe failure rolls the event back and
			// Stripe delivers it again.
			ended, err := tx.UserDeleted(ctx, user)
			if err != nil {
				return nil, err
			}
			if ended {
				if _, err := s.stripe.V1Subscriptions.Cancel(ctx, sub.ID, &stripe.SubscriptionCancelParams{}); err != nil && !gone(err) {
					return nil, stripeError(err)
				}
				s.o.Logger.Info("subscription of a deleted account cancelled", "subscription", sub.ID)
				live = false
			}
		}
		if live && (sub.Status == stripe.SubscriptionStatusActive || sub.Status == stripe.SubscriptionStatusTrialing) &&
			slices.ContainsFunc(itemsOf(&sub), func(it *stripe.SubscriptionItem) bool { return it.Price != nil && it.Price.ID == s.o.ProPriceID }) {
			plan = wire.PlanPro
		}
		ok, err := tx.ApplySubscription(ctx, sub.ID, user, created, rank, plan)
		if err != nil || !ok {
			return nil, err
		}
		return []string{user}, nil
	case "invoice.paid", "invoice.payment_failed":
		var inv struct {
			Customer json.RawMessage `json:"customer"`
		}
		if err := json.Unmarshal(ev.Data.Raw, &inv); err != nil {
			return nil, malformed(err)
		}
		user, err := tx.UserByCustomer(ctx, idOf(inv.Customer))
		if err != nil || user == "" {
			return nil, err
		}
		if ev.Type == "invoice.payment_failed" {
			s.o.Logger.Warn("a payment failed; the plan follows the subscription events", "user", user, "event", ev.ID)
		}
		return nil, tx.RecordEvent(ctx, user, string(ev.Type), created)
	}
	return nil, nil // recorded, ignored
}

// malformed answers an event whose object cannot be read: 400, so that
// Stripe does not retry it for days (and the event is not recorded).
func malformed(err error) error {
	return &wire.Error{Code: wire.CodeBadRequest, Message: "The event's object is malformed.", Reason: "webhook", Err: err}
}

// subscriber finds a subscription's user: by metadata.clerk_user_id (set
// at checkout, present even when this event precedes checkout.session.
// completed), else by the linked customer.
func (s *Service) subscriber(ctx context.Context, tx postgres.BillingTx, sub *stripe.Subscription) (string, error) {
	if id := sub.Metadata["clerk_user_id"]; id != "" {
		ok, err := tx.UserExists(ctx, id)
		if err != nil {
			return "", err
		}
		if ok {
			return id, nil
		}
	}
	if sub.Customer == nil {
		return "", nil
	}
	return tx.UserByCustomer(ctx, sub.Customer.ID)
}

func itemsOf(sub *stripe.Subscription) []*stripe.SubscriptionItem {
	if sub.Items == nil {
		return nil
	}
	return sub.Items.Data
}

// idOf reads an expandable field: "cus_123" or {"id":"cus_123",…}.
func idOf(raw json.RawMessage) string {
	var id string
	if json.Unmarshal(raw, &id) == nil {
		return id
	}
	var obj struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &obj)
	return obj.ID
}
