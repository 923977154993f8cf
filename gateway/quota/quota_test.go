package quota_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"github.com/signals-sorcery/sas/gateway/internal/testenv"
	"github.com/signals-sorcery/sas/gateway/quota"
	"github.com/signals-sorcery/sas/shared/wire"
)

func TestBuiltInIsTheContractTable(t *testing.T) {
	want := quota.Plans{
		"free": {RequestsPerMinute: 10, RequestsPerDay: 50, TokensPerDay: 20000, MaxTokens: 1024, Models: []string{"gpt-4o-mini"}},
		"pro":  {RequestsPerMinute: 60, RequestsPerDay: 2000, TokensPerDay: 2000000, MaxTokens: 4096, Models: []string{"gpt-4o-mini", "gpt-4o"}},
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
	p, err := quota.Load(write(good))
	if err != nil || p["pro"].MaxTokens != 8 || !p["pro"].Allows("n") || p["free"].Allows("n") {
		t.Fatalf("Load = %+v, %v", p, err)
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

func TestPerMinuteLimitAndHonestRetryAfter(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 10, 4, 50, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), clk.Now)
	u, plan := user(), quota.Plan{RequestsPerMinute: 3, RequestsPerDay: 100, TokensPerDay: 1000}
	ctx := context.Background()
	for i := range 3 {
		a, err := l.Admit(ctx, u, plan)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if got := quota.Tightest(a.Usage); got.Name != quota.RequestsPerMinute || got.Remaining != int64(2-i) {
			t.Errorf("request %d: tightest %+v", i+1, got)
		}
	}
	_, err := l.Admit(ctx, u, plan)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeRateLimited || we.RetryAfter != 10 {
		t.Fatalf("4th: %#v, want rate_limited with Retry-After 10 (the minute ends at :05:00)", err)
	}
	clk.Advance(10 * time.Second)
	if _, err := l.Admit(ctx, u, plan); err != nil {
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
	l := quota.NewLimiter(newRedis(t), clk.Now)
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 2, TokensPerDay: 1000}
	for range 2 {
		if _, err := l.Admit(ctx, u, plan); err != nil {
			t.Fatal(err)
		}
	}
	_, err := l.Admit(ctx, u, plan)
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeQuotaExceeded || we.RetryAfter != 3600 {
		t.Fatalf("3rd: %#v, want quota_exceeded with Retry-After 3600", err)
	}
	clk.Advance(time.Hour)
	if _, err := l.Admit(ctx, u, plan); err != nil {
		t.Errorf("after 00:00 UTC: %v", err)
	}
}

// TestTokenBudget: the request that crosses the budget is served; the next
// one is refused.
func TestTokenBudget(t *testing.T) {
	clk := testenv.NewClock(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC))
	l := quota.NewLimiter(newRedis(t), clk.Now)
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 100, RequestsPerDay: 100, TokensPerDay: 100}
	for i := range 2 {
		a, err := l.Admit(ctx, u, plan)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if err := l.Charge(ctx, a, 60); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Admit(ctx, u, plan); code(err) != wire.CodeQuotaExceeded {
		t.Fatalf("after 120 of 100 tokens: %v", err)
	}
	us, _ := l.Peek(ctx, u, plan)
	if us[2].Remaining != 0 || us[2].Name != quota.TokensPerDay {
		t.Errorf("tokens = %+v", us[2])
	}
}

func TestPeekAndRefundDoNotConsume(t *testing.T) {
	l := quota.NewLimiter(newRedis(t), nil)
	ctx := context.Background()
	u, plan := user(), quota.Plan{RequestsPerMinute: 2, RequestsPerDay: 10, TokensPerDay: 1000}
	for range 20 {
		if _, err := l.Peek(ctx, u, plan); err != nil {
			t.Fatal(err)
		}
	}
	a, err := l.Admit(ctx, u, plan)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Refund(ctx, a); err != nil {
		t.Fatal(err)
	}
	us, _ := l.Peek(ctx, u, plan)
	if us[0].Remaining != 2 || us[1].Remaining != 10 {
		t.Errorf("after peeks and a refund: %+v", us)
	}
}

// TestExactUnderConcurrency: many limiters (as many gateway instances
// would), one Redis, 150 concurrent admissions against 20 a day.
func TestExactUnderConcurrency(t *testing.T) {
	u, plan := user(), quota.Plan{RequestsPerMinute: 1000, RequestsPerDay: 20, TokensPerDay: 1 << 40}
	limiters := []*quota.Limiter{quota.NewLimiter(newRedis(t), nil), quota.NewLimiter(newRedis(t), nil), quota.NewLimiter(newRedis(t), nil)}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 150 {
		wg.Go(func() {
			_, err := limiters[i%3].Admit(context.Background(), u, plan)
			switch code(err) {
			case "":
				admitted.Add(1)
			case wire.CodeQuotaExceeded:
				refused.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 20 || refused.Load() != 130 {
		t.Errorf("admitted %d, refused %d; want 20 and 130", admitted.Load(), refused.Load())
	}
}

// TestRedisDown: the limiter fails closed with unavailable and a retry hint.
func TestRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:9", DialerRetries: 1, MaxRetries: -1})
	defer rdb.Close()
	l := quota.NewLimiter(rdb, nil)
	_, err := l.Admit(context.Background(), user(), quota.BuiltIn()["free"])
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeUnavailable || we.RetryAfter <= 0 {
		t.Errorf("Admit = %#v", err)
	}
	if _, err := l.Peek(context.Background(), user(), quota.BuiltIn()["free"]); code(err) != wire.CodeUnavailable {
		t.Errorf("Peek = %v", err)
	}
}
