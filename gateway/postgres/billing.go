package postgres

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
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
	db.changed(ctx, clerkUserID, err)
	return got, classify(err)
}

// BillingTx is one webhook event's transaction. It notes the users whose
// row it changes; the store announces them after the commit.
type BillingTx struct {
	tx      pgx.Tx
	changed *[]string
}

func (b BillingTx) note(clerkUserID string, err error) {
	if err == nil && !slices.Contains(*b.changed, clerkUserID) {
		*b.changed = append(*b.changed, clerkUserID)
	}
}

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
	var changed []string
	if err := f(BillingTx{tx: tx, changed: &changed}); err != nil {
		return false, classify(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, classify(err)
	}
	for _, id := range changed {
		db.changed(ctx, id, nil)
	}
	return true, nil
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

// UserDeleted reports whether the Clerk user's account is deleted.
func (b BillingTx) UserDeleted(ctx context.Context, clerkUserID string) (bool, error) {
	var deleted bool
	err := b.tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE clerk_user_id = $1 AND status = 'deleted')`, clerkUserID).Scan(&deleted)
	return deleted, err
}

// LinkCheckout links a completed checkout's customer and subscription to
// the user (a customer already recorded stays).
func (b BillingTx) LinkCheckout(ctx context.Context, clerkUserID, customerID, subscriptionID string) error {
	_, err := b.tx.Exec(ctx, `UPDATE users SET stripe_customer_id = coalesce(stripe_customer_id, nullif($2, '')),
		stripe_subscription_id = coalesce(nullif($3, ''), stripe_subscription_id), updated_at = now() WHERE clerk_user_id = $1`,
		clerkUserID, customerID, subscriptionID)
	b.note(clerkUserID, err)
	return err
}

// Event ranks break same-second ties between a subscription's events.
const (
	RankCreated = 0
	RankUpdated = 1
	RankDeleted = 2
)

// ApplySubscription records a subscription event's plan unless a newer
// event of that subscription was applied (compared by created time, then
// rank; equal: the later delivery applies), then sets the user's plan from
// all their subscriptions: pro while any says pro. The ordering check and
// the write are one statement, so concurrent first events of a new
// subscription cannot both win. It reports whether the user's plan was
// rewritten.
func (b BillingTx) ApplySubscription(ctx context.Context, subID, clerkUserID string, created time.Time, rank int, plan string) (bool, error) {
	var applied bool
	err := b.tx.QueryRow(ctx, `INSERT INTO stripe_subscriptions AS s (id, clerk_user_id, last_created, last_rank, plan)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET clerk_user_id = EXCLUDED.clerk_user_id, last_created = EXCLUDED.last_created,
			last_rank = EXCLUDED.last_rank, plan = EXCLUDED.plan
		WHERE (s.last_created, s.last_rank) <= (EXCLUDED.last_created, EXCLUDED.last_rank)
		RETURNING true`, subID, clerkUserID, created, rank, plan).Scan(&applied)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // an older event: the newer state stands
	}
	if err != nil {
		return false, err
	}
	_, err = b.tx.Exec(ctx, `UPDATE users SET updated_at = now(), stripe_subscription_id = $2,
		plan = CASE WHEN EXISTS (SELECT 1 FROM stripe_subscriptions WHERE clerk_user_id = $1 AND plan = 'pro') THEN 'pro' ELSE 'free' END
		WHERE clerk_user_id = $1`, clerkUserID, subID)
	b.note(clerkUserID, err)
	return err == nil, err
}

// RecordEvent notes the last billing event of a user (invoices).
func (b BillingTx) RecordEvent(ctx context.Context, clerkUserID, event string, at time.Time) error {
	_, err := b.tx.Exec(ctx, `UPDATE users SET last_billing_event = $2, last_billing_event_at = $3
		WHERE clerk_user_id = $1 AND (last_billing_event_at IS NULL OR last_billing_event_at <= $3)`, clerkUserID, event, at)
	b.note(clerkUserID, err)
	return err
}
