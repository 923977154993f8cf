package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/signals-sorcery/sas/shared/wire"
)

// Billing is a user's Stripe state.
type Billing struct {
	CustomerID, SubscriptionID string
	LastEvent                  string
	LastEventAt                time.Time
}

// Billing returns a user's Stripe state. Errors: not_found, unavailable.
func (db *DB) Billing(ctx context.Context, clerkUserID string) (Billing, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var b Billing
	var at *time.Time
	err := db.pool.QueryRow(ctx, `SELECT coalesce(stripe_customer_id, ''), coalesce(stripe_subscription_id, ''),
		coalesce(last_billing_event, ''), last_billing_event_at FROM users WHERE clerk_user_id = $1`, clerkUserID).
		Scan(&b.CustomerID, &b.SubscriptionID, &b.LastEvent, &at)
	if at != nil {
		b.LastEventAt = *at
	}
	return b, classify(err)
}

// SetStripeCustomer records the user's customer unless one is recorded
// already, and returns the one that stands (a concurrent checkout may have
// won). Errors: not_found, unavailable.
func (db *DB) SetStripeCustomer(ctx context.Context, clerkUserID, customerID string) (string, error) {
	ctx, cancel := db.bound(ctx)
	defer cancel()
	var got string
	err := db.pool.QueryRow(ctx, `UPDATE users SET stripe_customer_id = coalesce(stripe_customer_id, $2), updated_at = now()
		WHERE clerk_user_id = $1 RETURNING stripe_customer_id`, clerkUserID, customerID).Scan(&got)
	return got, classify(err)
}

// BillingTx is one webhook event's transaction.
type BillingTx struct{ tx pgx.Tx }

// WithBillingEvent runs f in a transaction that first records the event by
// id; a duplicate (already recorded) runs nothing and reports false.
// Concurrent deliveries of one event serialise on its primary key: one
// effect. Errors: unavailable, internal.
func (db *DB) WithBillingEvent(ctx context.Context, id, typ string, created time.Time, f func(BillingTx) error) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, classify(err)
	}
	defer tx.Rollback(ctx)
	tag, err := tx.Exec(ctx, `INSERT INTO stripe_events (id, type, created) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`, id, typ, created)
	if err != nil {
		return false, classify(err)
	}
	if tag.RowsAffected() == 0 {
		return false, nil
	}
	if err := f(BillingTx{tx: tx}); err != nil {
		return false, classify(err)
	}
	return true, classify(tx.Commit(ctx))
}

// UserByCustomer finds the user of a Stripe customer ("" if none).
func (b BillingTx) UserByCustomer(ctx context.Context, customerID string) (string, error) {
	var id string
	err := b.tx.QueryRow(ctx, `SELECT clerk_user_id FROM users WHERE stripe_customer_id = $1`, customerID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// UserExists reports whether the Clerk user is known.
func (b BillingTx) UserExists(ctx context.Context, clerkUserID string) (bool, error) {
	var ok bool
	err := b.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE clerk_user_id = $1)`, clerkUserID).Scan(&ok)
	return ok, err
}

// LinkCheckout links a completed checkout's customer and subscription to
// the user (a customer already recorded stays).
func (b BillingTx) LinkCheckout(ctx context.Context, clerkUserID, customerID, subscriptionID string) error {
	_, err := b.tx.Exec(ctx, `UPDATE users SET stripe_customer_id = coalesce(stripe_customer_id, nullif($2, '')),
		stripe_subscription_id = coalesce(nullif($3, ''), stripe_subscription_id), updated_at = now() WHERE clerk_user_id = $1`,
		clerkUserID, customerID, subscriptionID)
	return err
}

// ApplySubscription sets the user's plan from a subscription event unless a
// newer event of that subscription was applied already (on a tie, a
// deletion wins). It reports whether the event took effect.
func (b BillingTx) ApplySubscription(ctx context.Context, subID, clerkUserID string, created time.Time, deleted bool, plan string) (bool, error) {
	var lastCreated time.Time
	var lastDeleted bool
	err := b.tx.QueryRow(ctx, `SELECT last_created, last_deleted FROM stripe_subscriptions WHERE id = $1 FOR UPDATE`, subID).Scan(&lastCreated, &lastDeleted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return false, err
	case created.Before(lastCreated), created.Equal(lastCreated) && (lastDeleted || !deleted):
		return false, nil // an older (or equal, not stronger) event: the newer state stands
	}
	if _, err := b.tx.Exec(ctx, `INSERT INTO stripe_subscriptions (id, clerk_user_id, last_created, last_deleted) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO UPDATE SET clerk_user_id = $2, last_created = $3, last_deleted = $4`, subID, clerkUserID, created, deleted); err != nil {
		return false, err
	}
	if !(plan == wire.PlanFree || plan == wire.PlanPro) {
		return false, errors.New("unknown plan " + plan)
	}
	_, err = b.tx.Exec(ctx, `UPDATE users SET plan = $2, stripe_subscription_id = $3, updated_at = now() WHERE clerk_user_id = $1`, clerkUserID, plan, subID)
	return err == nil, err
}

// RecordEvent notes the last billing event of a user (invoices).
func (b BillingTx) RecordEvent(ctx context.Context, clerkUserID, event string, at time.Time) error {
	_, err := b.tx.Exec(ctx, `UPDATE users SET last_billing_event = $2, last_billing_event_at = $3 WHERE clerk_user_id = $1`, clerkUserID, event, at)
	return err
}
