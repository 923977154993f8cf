package quota_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

// TestBudgetBoundaries: a budget is a limit to reach, not one to stay
// under. Reservations that land exactly on a token or dollar budget are
// admitted — whether one reservation is the whole budget or several add up
// to it — and one more token or micro-dollar is refused, naming the budget,
// without consuming anything.
func TestBudgetBoundaries(t *testing.T) {
	// Request limits are counts, not reservations: their boundaries (the
	// limit-th request admitted, the next refused) are held by
	// TestPerMinuteLimitAndHonestRetryAfter, TestDailyQuotasResetAtMidnightUTC
	// and TestConcurrencySlots.
	const big = 1 << 40
	for _, tc := range []struct {
		name  string
		plan  quota.Plan
		fill  []quota.Reservation // together exactly the budget
		over  quota.Reservation   // one unit more
		limit string
		unit  string // how the refusal's message names the unit
	}{
		{"tokens, several", quota.Plan{TokensPerDay: 100}, []quota.Reservation{{Tokens: 60}, {Tokens: 40}}, quota.Reservation{Tokens: 1}, quota.TokensPerDay, "1 tokens"},
		{"tokens, whole", quota.Plan{TokensPerDay: 100}, []quota.Reservation{{Tokens: 100}}, quota.Reservation{Tokens: 1}, quota.TokensPerDay, "1 tokens"},
		{"usd per day, several", quota.Plan{TokensPerDay: big, USDPerDay: 100, USDPerMonth: 1000}, []quota.Reservation{{Cost: 60}, {Cost: 40}}, quota.Reservation{Cost: 1}, quota.USDPerDay, "$0.000001"},
		{"usd per day, whole", quota.Plan{TokensPerDay: big, USDPerDay: 100, USDPerMonth: 1000}, []quota.Reservation{{Cost: 100}}, quota.Reservation{Cost: 1}, quota.USDPerDay, "$0.000001"},
		{"usd per month, several", quota.Plan{TokensPerDay: big, USDPerDay: 1000, USDPerMonth: 100}, []quota.Reservation{{Cost: 60}, {Cost: 40}}, quota.Reservation{Cost: 1}, quota.USDPerMonth, "$0.000001"},
		{"usd per month, whole", quota.Plan{TokensPerDay: big, USDPerMonth: 100}, []quota.Reservation{{Cost: 100}}, quota.Reservation{Cost: 1}, quota.USDPerMonth, "$0.000001"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := testenv.NewClock(time.Date(2027, 3, 15, 12, 0, 0, 0, time.UTC))
			l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now})
			ctx := context.Background()
			u, plan := user(), tc.plan
			plan.RequestsPerMinute, plan.RequestsPerDay = 100, 100
			var last quota.Admission
			for i, res := range tc.fill {
				a, err := l.Admit(ctx, u, plan, res)
				if err != nil {
					t.Fatalf("reservation %d of %d (%+v), which ends exactly on the budget: %v", i+1, len(tc.fill), res, err)
				}
				last = a
			}
			if got := remainingOf(last.Usage, tc.limit); got != 0 {
				t.Errorf("%s remaining after the budget is reached = %d, want 0", tc.limit, got)
			}
			a, err := l.Admit(ctx, u, plan, tc.over)
			var we *wire.Error
			if !errors.As(err, &we) {
				t.Fatalf("one unit over the budget: %v, want quota_exceeded %s", err, tc.limit)
			}
			if diff := cmp.Diff([]string{wire.CodeQuotaExceeded, tc.limit, tc.limit}, []string{we.Code, we.Limit, a.Refused}); diff != "" {
				t.Errorf("one unit over the budget: code, limit, refused (-want +got):\n%s", diff)
			}
			if want := "This request may use up to " + tc.unit + ", and "; !strings.HasPrefix(we.Message, want) || !strings.Contains(we.Message, "("+tc.limit+")") {
				t.Errorf("message %q: want it to start %q and name %s", we.Message, want, tc.limit)
			}
			// The refusal consumed nothing: the counters still end on the budget.
			us, err := l.Peek(ctx, u, plan)
			if err != nil {
				t.Fatal(err)
			}
			if got := remainingOf(us, tc.limit); got != 0 {
				t.Errorf("%s remaining after the refusal = %d, want 0", tc.limit, got)
			}
			if got := remainingOf(us, quota.RequestsPerDay); got != plan.RequestsPerDay-int64(len(tc.fill)) {
				t.Errorf("requests remaining = %d, want %d (the refused one not counted)", got, plan.RequestsPerDay-int64(len(tc.fill)))
			}
		})
	}
}

// remainingOf is the Remaining of the limit named name in us; it fails the
// lookup loudly (-1) when the limit is not listed.
func remainingOf(us []quota.Usage, name string) int64 {
	for _, u := range us {
		if u.Name == name {
			return u.Remaining
		}
	}
	return -1
}
