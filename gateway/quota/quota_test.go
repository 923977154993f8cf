package quota_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

func TestBuiltInIsTheContractTable(t *testing.T) {
	want := quota.Plans{
		"free": {RequestsPerMinute: 10, RequestsPerDay: 50, TokensPerDay: 20000, MaxTokens: 1024, MaxInputTokens: 8000,
			ConcurrentRequests: 2, USDPerDay: 50_000, USDPerMonth: 500_000, Models: []string{"gpt-4o-mini"}},
		"pro": {RequestsPerMinute: 60, RequestsPerDay: 2000, TokensPerDay: 2000000, MaxTokens: 4096, MaxInputTokens: 100_000,
			ConcurrentRequests: 8, USDPerDay: 3_000_000, USDPerMonth: 30_000_000, Models: []string{"gpt-4o-mini", "gpt-4o"}},
	}
	if diff := cmp.Diff(want, quota.BuiltIn()); diff != "" {
		t.Error(diff)
	}
	if p, err := quota.Load(""); err != nil || !cmp.Equal(p, want) {
		t.Errorf("Load(\"\") = %v, %v", p, err)
	}
}

func TestLoadPlansFile(t *testing.T) {
	write := func(s string) string {
		p := filepath.Join(t.TempDir(), "plans.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := `{"free":{"requests_per_minute":1,"requests_per_day":2,"tokens_per_day":3,"max_tokens":4,"models":["m"]},
	          "pro":{"requests_per_minute":5,"requests_per_day":6,"tokens_per_day":7,"max_tokens":8,"models":["m","n"]}}`
	// A file of the first release (no spend limits) still loads: the
	// limits it leaves out do not apply.
	p, err := quota.Load(write(good))
	if err != nil || p["pro"].MaxTokens != 8 || !p["pro"].Allows("n") || p["free"].Allows("n") ||
		p["free"].USDPerDay != 0 || p["free"].ConcurrentRequests != 0 || p["free"].MaxInputTokens != 0 {
		t.Fatalf("Load = %+v, %v", p, err)
	}
	spend := strings.Replace(good, `"max_tokens":4,`, `"max_tokens":4,"max_input_tokens":100,"concurrent_requests":3,"usd_per_day":0.05,"usd_per_month":1.5,"service_tiers":["flex"],`, 1)
	p, err = quota.Load(write(spend))
	if want := (quota.Plan{RequestsPerMinute: 1, RequestsPerDay: 2, TokensPerDay: 3, MaxTokens: 4, MaxInputTokens: 100, ConcurrentRequests: 3,
		USDPerDay: 50_000, USDPerMonth: 1_500_000, ServiceTiers: []string{"flex"}, Models: []string{"m"}}); err != nil || !cmp.Equal(p["free"], want) {
		t.Fatalf("Load = %+v, %v; want free = %+v", p["free"], err, want)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"unknown key":     {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"burst":9`, 1), "unknown field \"burst\""},
		"negative":        {strings.Replace(good, `"requests_per_day":2`, `"requests_per_day":-2`, 1), "free: requests_per_day is negative"},
		"empty models":    {strings.Replace(good, `"models":["m"]`, `"models":[]`, 1), "free: models must list"},
		"zero max_tokens": {strings.Replace(good, `"max_tokens":8`, `"max_tokens":0`, 1), "pro: max_tokens must be at least 1"},
		"missing field":   {strings.Replace(good, `"tokens_per_day":3,`, ``, 1), "free: tokens_per_day is missing"},
		"missing plan":    {`{"free":{"requests_per_minute":1,"requests_per_day":2,"tokens_per_day":3,"max_tokens":4,"models":["m"]}}`, `plan "pro" is missing`},
		"unknown plan":    {strings.Replace(good, `"pro"`, `"gold"`, 1), `unknown plan "gold"`},
		"not JSON":        {`{`, "not a JSON object"},
		"wrong type":      {strings.Replace(good, `"max_tokens":4`, `"max_tokens":"4"`, 1), "free:"},
		"sub-micro usd":   {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"usd_per_day":0.0000001`, 1), "free: usd_per_day must be a non-negative amount of dollars with at most 6 decimals"},
		"zero usd":        {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"usd_per_month":0`, 1), "free: usd_per_month must be above 0"},
		"negative usd":    {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"usd_per_month":-1`, 1), "free: usd_per_month must be"},
		"zero concurrent": {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"concurrent_requests":0`, 1), "free: concurrent_requests must be at least 1"},
		"zero max input":  {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"max_input_tokens":0`, 1), "free: max_input_tokens must be at least 1"},
		"empty tier":      {strings.Replace(good, `"max_tokens":4`, `"max_tokens":4,"service_tiers":[""]`, 1), "free: service_tiers must not hold an empty value"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := quota.Load(write(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "SAS_PLANS_FILE") {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := quota.Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func newRedis(t *testing.T) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// user returns an id no other test (or test run) shares.
func user() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "user_" + hex.EncodeToString(b[:])
}

func code(err error) string {
	if err == nil {
		return ""
	}
	return wire.ErrorCode(err)
}

func TestLoadPrices(t *testing.T) {
	write := func(s string) string {
		p := filepath.Join(t.TempDir(), "prices.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if p, err := quota.LoadPrices(""); err != nil || !cmp.Equal(p, quota.BuiltInPrices()) {
		t.Errorf("LoadPrices(\"\") = %v, %v", p, err)
	}
	want := quota.Prices{"gpt-4o": {Input: 2_500_000, CachedInput: 1_250_000, Output: 10_000_000},
		"gpt-4o-mini": {Input: 150_000, CachedInput: 75_000, Output: 600_000}}
	if diff := cmp.Diff(want, quota.BuiltInPrices()); diff != "" {
		t.Errorf("built-in prices are not the contract's (-want +got):\n%s", diff)
	}
	good := `{"m":{"input":0.15,"cached_input":0.075,"output":0.6}}`
	p, err := quota.LoadPrices(write(good))
	if err != nil || p["m"] != (quota.Price{Input: 150_000, CachedInput: 75_000, Output: 600_000}) {
		t.Fatalf("LoadPrices = %v, %v", p, err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"missing field": {`{"m":{"input":0.15,"output":0.6}}`, "m: cached_input is missing"},
		"unknown field": {`{"m":{"input":0.15,"cached_input":0.1,"output":0.6,"audio":1}}`, `unknown field "audio"`},
		"too precise":   {`{"m":{"input":0.0000001,"cached_input":0,"output":0}}`, "m: input must be"},
		"negative":      {`{"m":{"input":1,"cached_input":-1,"output":0}}`, "m: cached_input must be"},
		"exponent":      {`{"m":{"input":1e-7,"cached_input":0,"output":0}}`, "m: input must be"},
		"not an object": {`[]`, "not a JSON object"},
		"empty":         {`{}`, "no model is priced"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := quota.LoadPrices(write(tc.body))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "SAS_PRICES_FILE") {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if missing := quota.Unpriced(quota.BuiltIn(), quota.Prices{"gpt-4o-mini": {}}); !cmp.Equal(missing, []string{"pro: gpt-4o"}) {
		t.Errorf("Unpriced = %v", missing)
	}
}

func TestMoney(t *testing.T) {
	for m, want := range map[quota.Micros]string{0: "0", 50_000: "0.05", 3_000_000: "3", 198: "0.000198", 1_234_567: "1.234567", -5: "-0.000005"} {
		if got := m.String(); got != want {
			t.Errorf("Micros(%d) = %q, want %q", m, got, want)
		}
	}
	for s, want := range map[string]quota.Micros{"0.05": 50_000, "30": 30_000_000, "0.000001": 1, "2.50": 2_500_000} {
		if got, err := quota.ParseUSD(s); err != nil || got != want {
			t.Errorf("ParseUSD(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", ".5", "1.", "-1", "1e3", "0.0000001", "01", "1,5", "abc"} {
		if _, err := quota.ParseUSD(s); err == nil {
			t.Errorf("ParseUSD(%q) accepted", s)
		}
	}
	// gpt-4o-mini: 1000 input (200 cached), 500 output.
	p := quota.BuiltInPrices()["gpt-4o-mini"]
	if got := p.Cost(1000, 200, 500); got != 435 { // 800×0.15 + 200×0.075 + 500×0.6 µ$
		t.Errorf("Cost = %d µ$, want 435", got)
	}
	if got := p.Cost(1, 0, 0); got != 1 { // 0.15 µ$, rounded up
		t.Errorf("Cost of one token = %d µ$, want 1 (rounded up)", got)
	}
	if got := p.Cost(10, 50, 0); got != 1 { // cached above input is capped at input
		t.Errorf("Cost = %d", got)
	}
}

func TestPerMinuteLimitAndHonestRetryAfter(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 10, 4, 50, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now})
	u, plan := user(), quota.Plan{RequestsPerMinute: 3, RequestsPerDay: 100, TokensPerDay: 1000}
	ctx := context.Background()
	for i := range 3 {
		a, err := l.Admit(ctx, u, plan, quota.Reservation{})
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if got := quota.Tightest(a.Usage); got.Name != quota.RequestsPerMinute || got.Remaining != int64(2-i) {
			t.Errorf("request %d: tightest %+v", i+1, got)
		}
	}
	_, err := l.Admit(ctx, u, plan, quota.Reservation{})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeRateLimited || we.RetryAfter != 10 || we.Limit != quota.RequestsPerMinute {
		t.Fatalf("4th: %#v, want rate_limited with Retry-After 10 (the minute ends at :05:00)", err)
	}
	clk.Advance(10 * time.Second)
	if _, err := l.Admit(ctx, u, plan, quota.Reservation{}); err != nil {
		t.Errorf("next minute: %v", err)
	}
	// The refusal consumed nothing: the day counts 4 requests.
	us, _ := l.Peek(ctx, u, plan)
	if us[1].Remaining != 96 {
		t.Errorf("day remaining = %d, want 96", us[1].Remaining)
	}
}

func TestDailyQuotasResetAtMidnightUTC(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 23, 0, 0, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now})
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 2, TokensPerDay: 1000}
	for range 2 {
		if _, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 10}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 10})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeQuotaExceeded || we.RetryAfter != 3600 || we.Limit != quota.RequestsPerDay {
		t.Fatalf("3rd: %#v, want quota_exceeded requests_per_day with Retry-After 3600", err)
	}
	clk.Advance(time.Hour)
	if _, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 10}); err != nil {
		t.Errorf("after 00:00 UTC: %v", err)
	}
}

// TestReservations: a request is admitted only if its reservation fits
// after every charge and every reservation in flight; settling gives the
// unused part back at once.
func TestReservations(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now})
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 100, TokensPerDay: 100}
	res := quota.Reservation{Tokens: 40}
	a1, err := l.Admit(ctx, u, plan, res)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Admit(ctx, u, plan, res); err != nil {
		t.Fatal(err)
	}
	// 80 reserved in flight: 40 more would make 120.
	a3, err := l.Admit(ctx, u, plan, res)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeQuotaExceeded || we.Limit != quota.TokensPerDay || a3.Refused != quota.TokensPerDay {
		t.Fatalf("3rd: %#v, want quota_exceeded tokens_per_day", err)
	}
	if !strings.Contains(we.Message, "40 tokens") || !strings.Contains(we.Message, "20 tokens") {
		t.Errorf("message %q does not say what the request needs and what remains", we.Message)
	}
	if got := tokensUsed(t, l, u, plan); got != 80 {
		t.Errorf("in flight: %d tokens used, want the two reservations (80)", got)
	}
	// The first used 10 of its 40: 30 come back at once, and the third fits.
	if err := l.Settle(ctx, a1, quota.Settlement{Tokens: 10}); err != nil {
		t.Fatal(err)
	}
	if got := tokensUsed(t, l, u, plan); got != 50 {
		t.Errorf("after settling 10 of 40: %d used, want 50", got)
	}
	if _, err := l.Admit(ctx, u, plan, res); err != nil {
		t.Errorf("after the settlement: %v", err)
	}
	// A reservation bigger than the whole budget says so.
	_, err = l.Admit(ctx, u, plan, quota.Reservation{Tokens: 101})
	if !errors.As(err, &we) || !strings.Contains(we.Message, "more than your plan's whole") {
		t.Errorf("oversized reservation: %v", err)
	}
}

func tokensUsed(t *testing.T, l *quota.Limiter, user string, p quota.Plan) int64 {
	t.Helper()
	us, err := l.Peek(context.Background(), user, p)
	if err != nil {
		t.Fatal(err)
	}
	return us[2].Limit - us[2].Remaining
}

// TestMoneyBudgets: the daily and monthly dollar budgets hold like the
// token budget, the month spans its days, and /v1/limits shows dollars.
func TestMoneyBudgets(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 30, 12, 0, 0, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now})
	ctx := context.Background()
	u := user()
	plan := quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 100, TokensPerDay: 1 << 40, USDPerDay: 100, USDPerMonth: 150}
	res := quota.Reservation{Cost: 40}
	for range 2 {
		if _, err := l.Admit(ctx, u, plan, res); err != nil {
			t.Fatal(err)
		}
	}
	_, err := l.Admit(ctx, u, plan, res)
	var we *wire.Error
	if !errors.As(err, &we) || we.Limit != quota.USDPerDay || we.RetryAfter != 12*3600 {
		t.Fatalf("3rd of the day: %#v, want usd_per_day until midnight", err)
	}
	clk.Advance(24 * time.Hour) // March 31st: a new day, the same month (80 of 150 used)
	if _, err := l.Admit(ctx, u, plan, res); err != nil {
		t.Fatal(err)
	}
	_, err = l.Admit(ctx, u, plan, res) // 120 + 40 > 150
	if !errors.As(err, &we) || we.Limit != quota.USDPerMonth || we.RetryAfter != 12*3600 {
		t.Fatalf("over the month: %#v, want usd_per_month until April 1st", err)
	}
	us, _ := l.Peek(ctx, u, plan)
	b, _ := json.Marshal(us)
	for _, want := range []string{`{"name":"usd_per_day","limit":0.0001,"remaining":0.00006,`, `{"name":"usd_per_month","limit":0.00015,"remaining":0.00003,"reset_at":"2027-04-01T00:00:00Z"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("limits %s lack %s", b, want)
		}
	}
	clk.Advance(24 * time.Hour) // April 1st
	if _, err := l.Admit(ctx, u, plan, res); err != nil {
		t.Errorf("new month: %v", err)
	}
}

// TestSettlementRules: what each settlement gives back.
func TestSettlementRules(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 23, 59, 0, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now})
	ctx := context.Background()
	u := user()
	plan := quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 100, TokensPerDay: 1000, USDPerDay: 1000, USDPerMonth: 1000}
	res := quota.Reservation{Tokens: 100, Cost: 100}
	used := func() map[string]int64 {
		us, _ := l.Peek(ctx, u, plan)
		m := map[string]int64{}
		for _, x := range us {
			m[x.Name] = x.Limit - x.Remaining
		}
		return m
	}
	// The upstream failed: the day's request, tokens and money come back;
	// the minute's request does not.
	a, _ := l.Admit(ctx, u, plan, res)
	if err := l.Settle(ctx, a, quota.Settlement{ReturnRequest: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{quota.RequestsPerMinute: 1, quota.RequestsPerDay: 0, quota.TokensPerDay: 0, quota.USDPerDay: 0, quota.USDPerMonth: 0}
	if diff := cmp.Diff(want, used()); diff != "" {
		t.Errorf("upstream failure (-want +got):\n%s", diff)
	}
	// The client's fault (upstream 400): the request counts, nothing else.
	a, _ = l.Admit(ctx, u, plan, res)
	_ = l.Settle(ctx, a, quota.Settlement{})
	want = map[string]int64{quota.RequestsPerMinute: 2, quota.RequestsPerDay: 1, quota.TokensPerDay: 0, quota.USDPerDay: 0, quota.USDPerMonth: 0}
	if diff := cmp.Diff(want, used()); diff != "" {
		t.Errorf("client fault (-want +got):\n%s", diff)
	}
	// Reserved before midnight, settled after: the reserved day is
	// settled, the new day starts clean (the month goes on).
	a, _ = l.Admit(ctx, u, plan, res)
	clk.Advance(2 * time.Minute)
	_ = l.Settle(ctx, a, quota.Settlement{Tokens: 30, Cost: 20})
	if diff := cmp.Diff(map[string]int64{quota.RequestsPerMinute: 0, quota.RequestsPerDay: 0, quota.TokensPerDay: 0, quota.USDPerDay: 0, quota.USDPerMonth: 20}, used()); diff != "" {
		t.Errorf("the new day (-want +got):\n%s", diff)
	}
	clk.Advance(-2 * time.Minute)
	if got := used(); got[quota.TokensPerDay] != 30 || got[quota.USDPerDay] != 20 {
		t.Errorf("the reserved day after settling: %v, want 30 tokens and 20 µ$", got)
	}
}

// TestConcurrencySlots: requests in flight are capped; a settled request
// frees its slot; an abandoned one frees it when its lease ends; a renewed
// one keeps it.
func TestConcurrencySlots(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{Now: clk.Now, SlotLease: time.Minute})
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 1000, TokensPerDay: 1000, ConcurrentRequests: 2}
	a1, err := l.Admit(ctx, u, plan, quota.Reservation{})
	if err != nil || !a1.HoldsSlot() {
		t.Fatal(err)
	}
	a2, _ := l.Admit(ctx, u, plan, quota.Reservation{})
	_, err = l.Admit(ctx, u, plan, quota.Reservation{})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeTooManyConcurrent || we.RetryAfter != 1 || we.Limit != quota.ConcurrentRequests {
		t.Fatalf("3rd in flight: %#v", err)
	}
	if err := l.Settle(ctx, a1, quota.Settlement{}); err != nil {
		t.Fatal(err)
	}
	a3, err := l.Admit(ctx, u, plan, quota.Reservation{})
	if err != nil {
		t.Fatalf("after one settled: %v", err)
	}
	// a2 is abandoned (its instance died); a3 is renewed 40 s later.
	clk.Advance(40 * time.Second)
	if err := l.Renew(ctx, a3); err != nil {
		t.Fatal(err)
	}
	clk.Advance(21 * time.Second) // a2's lease has ended, a3's has not
	if _, err := l.Admit(ctx, u, plan, quota.Reservation{}); err != nil {
		t.Fatalf("after the abandoned lease: %v", err)
	}
	if _, err := l.Admit(ctx, u, plan, quota.Reservation{}); wire.ErrorCode(err) != wire.CodeTooManyConcurrent {
		t.Errorf("the renewed slot was lost: %v", err)
	}
	_ = a2
	if l.RenewEvery() != 20*time.Second {
		t.Errorf("RenewEvery = %v, want a third of the lease", l.RenewEvery())
	}
}

func TestPeekDoesNotConsume(t *testing.T) {
	l := quota.NewLimiter(newRedis(t), quota.LimiterOptions{})
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 2, RequestsPerDay: 10, TokensPerDay: 1000}
	for range 20 {
		if _, err := l.Peek(ctx, u, plan); err != nil {
			t.Fatal(err)
		}
	}
	us, _ := l.Peek(ctx, u, plan)
	if len(us) != 3 || us[0].Remaining != 2 || us[1].Remaining != 10 || us[2].Remaining != 1000 {
		t.Errorf("after peeks: %+v", us)
	}
}

// TestExactUnderConcurrency: many limiters (as many gateway instances
// would), one Redis, 150 concurrent admissions against 20 requests a day,
// then 150 against a token budget that fits 7 reservations and a money
// budget that fits 5.
func TestExactUnderConcurrency(t *testing.T) {
	limiters := []*quota.Limiter{quota.NewLimiter(newRedis(t), quota.LimiterOptions{}), quota.NewLimiter(newRedis(t), quota.LimiterOptions{}), quota.NewLimiter(newRedis(t), quota.LimiterOptions{})}
	for _, tc := range []struct {
		name  string
		plan  quota.Plan
		res   quota.Reservation
		want  int64
		limit string
	}{
		{"requests", quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 20, TokensPerDay: 1 << 40}, quota.Reservation{}, 20, quota.RequestsPerDay},
		{"tokens", quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 1000, TokensPerDay: 7_500}, quota.Reservation{Tokens: 1000}, 7, quota.TokensPerDay},
		{"money", quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 1000, TokensPerDay: 1 << 40, USDPerDay: 5_999}, quota.Reservation{Cost: 1000}, 5, quota.USDPerDay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := user()
			var admitted, refused atomic.Int64
			var wg sync.WaitGroup
			for i := range 150 {
				wg.Go(func() {
					a, err := limiters[i%3].Admit(context.Background(), u, tc.plan, tc.res)
					switch code(err) {
					case "":
						admitted.Add(1)
					case wire.CodeQuotaExceeded:
						if a.Refused != tc.limit {
							t.Errorf("refused by %s", a.Refused)
						}
						refused.Add(1)
					default:
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if admitted.Load() != tc.want || refused.Load() != 150-tc.want {
				t.Errorf("admitted %d, refused %d; want %d and %d", admitted.Load(), refused.Load(), tc.want, 150-tc.want)
			}
		})
	}
}

// TestRedisDown: the limiter fails closed with unavailable and a retry hint.
func TestRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:9", DialerRetries: 1, MaxRetries: -1})
	defer rdb.Close()
	l := quota.NewLimiter(rdb, quota.LimiterOptions{})
	_, err := l.Admit(context.Background(), user(), quota.BuiltIn()["free"], quota.Reservation{})
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeUnavailable || we.RetryAfter <= 0 {
		t.Errorf("Admit = %#v", err)
	}
	if _, err := l.Peek(context.Background(), user(), quota.BuiltIn()["free"]); code(err) != wire.CodeUnavailable {
		t.Errorf("Peek = %v", err)
	}
}

// TestTightest: the RateLimit-* headers describe the request or token
// limit with the least remaining as a fraction of its limit, never money.
func TestTightest(t *testing.T) {
	reset := time.Unix(1_800_000_000, 0)
	us := []quota.Usage{
		{Name: quota.RequestsPerMinute, Limit: 10, Remaining: 5, ResetAt: reset},           // 50 %
		{Name: quota.RequestsPerDay, Limit: 50, Remaining: 45, ResetAt: reset},             // 90 %
		{Name: quota.TokensPerDay, Limit: 20000, Remaining: 4000, ResetAt: reset},          // 20 %
		{Name: quota.USDPerDay, Limit: 50000, Remaining: 1, ResetAt: reset.Add(time.Hour)}, // money: never
	}
	if got := quota.Tightest(us); got.Name != quota.TokensPerDay {
		t.Errorf("Tightest = %s, want tokens_per_day (20 %% left, though 4000 is the most in absolute terms)", got.Name)
	}
}

// BenchmarkAdmitSettle is one request's two round trips to Redis (a plan
// with every limit, a concurrency slot, and a usage event).
func BenchmarkAdmitSettle(b *testing.B) {
	opts, err := redis.ParseURL(testenv.RedisURL(b))
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	l := quota.NewLimiter(rdb, quota.LimiterOptions{UsageStream: "sas:usage:bench:" + user()})
	plan := quota.BuiltIn()["pro"]
	plan.RequestsPerMinute, plan.RequestsPerDay = 1<<40, 1<<40
	ctx := context.Background()
	u := user()
	for b.Loop() {
		a, err := l.Admit(ctx, u, plan, quota.Reservation{Tokens: 100, Cost: 10})
		if err != nil {
			b.Fatal(err)
		}
		e := gateway.UsageEvent{ID: a.ID(), ClerkUserID: u, Model: "gpt-4o-mini", Endpoint: "chat.completions", InputTokens: 10, OutputTokens: 20, Source: "upstream", Outcome: "complete", At: time.Now()}
		if err := l.Settle(ctx, a, quota.Settlement{Tokens: 30, Cost: 5, Event: &e}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPlansFor: a plan the table does not have gets free's limits — one
// rule for /v1/limits and the proxy (/v1/limits once peeked at a zero plan).
func TestPlansFor(t *testing.T) {
	ps := quota.BuiltIn()
	if got := ps.For(wire.PlanPro); got.RequestsPerDay != ps[wire.PlanPro].RequestsPerDay {
		t.Errorf("pro: %+v", got)
	}
	if got := ps.For("gold"); got.RequestsPerDay != ps[wire.PlanFree].RequestsPerDay || len(got.Models) == 0 {
		t.Errorf("an unknown plan: %+v, want free's", got)
	}
}
