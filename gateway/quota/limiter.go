package quota

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/shared/wire"
)

// Limit names of the contract.
const (
	RequestsPerMinute = "requests_per_minute"
	RequestsPerDay    = "requests_per_day"
	TokensPerDay      = "tokens_per_day"
)

// Limiter enforces a Plan in Redis. Every admission is one Lua script: one
// round trip, atomic across any number of gateway instances sharing the
// Redis, so N instances never admit more than the limit.
//
// Windows are fixed and aligned: the calendar minute and the UTC day. That
// makes "remaining" and "reset_at" exact (what /v1/limits shows is what the
// next request meets) at the price of allowing up to 2× the per-minute rate
// across a minute boundary, which is acceptable for a throttle whose real
// budget is the daily one. go-redis/redis_rate's GCRA would smooth that, but
// it is a round trip of its own and cannot be made atomic with the daily
// counters; all three limits in one script can.
//
// Keys carry the user id in a hash tag ({…}) so one script's keys share a
// cluster slot.
type Limiter struct {
	rdb *redis.Client
	now func() time.Time
}

// NewLimiter returns a Limiter on rdb with clock now (time.Now when nil).
// The clock decides the windows: instances must have synced clocks (Fly's
// machines do), or their minutes disagree by their skew.
func NewLimiter(rdb *redis.Client, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{rdb: rdb, now: now}
}

// Usage is a limit's state for one user.
type Usage struct {
	Name      string    `json:"name"`
	Limit     int64     `json:"limit"`
	Remaining int64     `json:"remaining"`
	ResetAt   time.Time `json:"reset_at"`
}

// Admission is an admitted request: the state after it, and what Refund
// needs to give it back.
type Admission struct {
	Usage []Usage
	// Refused names the limit that refused the request, if one did.
	Refused                string
	minute, dayReq, dayTok string
}

// Tightest returns the limit with the least remaining (for the RateLimit-*
// headers); on a tie, the one that resets last, so that a client waiting
// for it is not sent back too early.
func Tightest(us []Usage) Usage {
	best := us[0]
	for _, u := range us[1:] {
		if u.Remaining < best.Remaining || (u.Remaining == best.Remaining && u.ResetAt.After(best.ResetAt)) {
			best = u
		}
	}
	return best
}

type windows struct {
	minute, dayReq, dayTok string
	minuteEnd, dayEnd      time.Time
}

func windowsAt(user string, now time.Time) windows {
	now = now.UTC()
	minuteStart := now.Truncate(time.Minute)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	tag := "sas:q:{" + user + "}:"
	ymd := day.Format("20060102")
	return windows{
		minute:    tag + "m:" + strconv.FormatInt(minuteStart.Unix()/60, 10),
		dayReq:    tag + "rd:" + ymd,
		dayTok:    tag + "td:" + ymd,
		minuteEnd: minuteStart.Add(time.Minute),
		dayEnd:    day.AddDate(0, 0, 1),
	}
}

// admitScript checks every limit and, only if all pass, counts the request
// against the minute and the day. Tokens are charged after the response.
// Returns {verdict, minute count, day requests, day tokens}; verdict 0 =
// admitted, 1 = per-minute limit, 2 = daily requests, 3 = daily tokens.
var admitScript = redis.NewScript(`
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
local t = tonumber(redis.call('GET', KEYS[3]) or '0')
if t >= tonumber(ARGV[3]) then return {3, m, d, t} end
if d >= tonumber(ARGV[2]) then return {2, m, d, t} end
if m >= tonumber(ARGV[1]) then return {1, m, d, t} end
m = redis.call('INCR', KEYS[1])
if m == 1 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
d = redis.call('INCR', KEYS[2])
if d == 1 then
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  -- the day's token counter exists (with its expiry) from the first
  -- request on, so charging is a single INCRBY
  redis.call('SET', KEYS[3], t, 'EX', ARGV[5], 'NX')
end
return {0, m, d, t}
`)

// Admit counts one request for user under plan, or refuses it.
//
// Errors: *wire.Error rate_limited or quota_exceeded (with RetryAfter until
// the window resets), or unavailable when Redis cannot be reached — the
// gateway fails closed.
func (l *Limiter) Admit(ctx context.Context, user string, p Plan) (Admission, error) {
	now := l.now()
	w := windowsAt(user, now)
	dayTTL := int64(w.dayEnd.Sub(now).Seconds()) + 86400 // keep yesterday readable for a day
	res, err := admitScript.Run(ctx, l.rdb, []string{w.minute, w.dayReq, w.dayTok},
		p.RequestsPerMinute, p.RequestsPerDay, p.TokensPerDay, 120, dayTTL).Int64Slice()
	if err != nil {
		return Admission{}, unavailable(err)
	}
	usage := l.usage(p, w, res[1], res[2], res[3])
	switch res[0] {
	case 1:
		return Admission{Usage: usage, Refused: RequestsPerMinute}, &wire.Error{Code: wire.CodeRateLimited, RetryAfter: retryAfter(now, w.minuteEnd),
			Message: fmt.Sprintf("Too many requests: your plan allows %d per minute.", p.RequestsPerMinute)}
	case 2:
		return Admission{Usage: usage, Refused: RequestsPerDay}, &wire.Error{Code: wire.CodeQuotaExceeded, RetryAfter: retryAfter(now, w.dayEnd),
			Message: fmt.Sprintf("Daily request quota used up (%d per day); it resets at 00:00 UTC.", p.RequestsPerDay)}
	case 3:
		return Admission{Usage: usage, Refused: TokensPerDay}, &wire.Error{Code: wire.CodeQuotaExceeded, RetryAfter: retryAfter(now, w.dayEnd),
			Message: fmt.Sprintf("Daily token quota used up (%d per day); it resets at 00:00 UTC.", p.TokensPerDay)}
	}
	return Admission{Usage: usage, minute: w.minute, dayReq: w.dayReq, dayTok: w.dayTok}, nil
}

// Charge adds the tokens a response used to the admission's day: one
// INCRBY (the admission created the counter with its expiry). Errors:
// unavailable.
func (l *Limiter) Charge(ctx context.Context, a Admission, tokens int64) error {
	if tokens <= 0 || a.dayTok == "" {
		return nil
	}
	if err := l.rdb.IncrBy(ctx, a.dayTok, tokens).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// refundScript decrements counters that still exist: a late refund must
// not create a counter without an expiry.
var refundScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then redis.call('DECR', k) end
end
return 0
`)

// Refund gives back an admitted request that never reached the model (the
// upstream refused it before sending anything). Errors: unavailable.
func (l *Limiter) Refund(ctx context.Context, a Admission) error {
	if a.minute == "" {
		return nil
	}
	if err := refundScript.Run(ctx, l.rdb, []string{a.minute, a.dayReq}).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable(err)
	}
	return nil
}

// Peek returns the user's current usage without consuming anything.
// Errors: unavailable.
func (l *Limiter) Peek(ctx context.Context, user string, p Plan) ([]Usage, error) {
	w := windowsAt(user, l.now())
	vals, err := l.rdb.MGet(ctx, w.minute, w.dayReq, w.dayTok).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	n := make([]int64, 3)
	for i, v := range vals {
		if s, ok := v.(string); ok {
			n[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return l.usage(p, w, n[0], n[1], n[2]), nil
}

func (l *Limiter) usage(p Plan, w windows, minute, dayReq, dayTok int64) []Usage {
	rem := func(limit, used int64) int64 { return max(0, limit-used) }
	return []Usage{
		{Name: RequestsPerMinute, Limit: p.RequestsPerMinute, Remaining: rem(p.RequestsPerMinute, minute), ResetAt: w.minuteEnd},
		{Name: RequestsPerDay, Limit: p.RequestsPerDay, Remaining: rem(p.RequestsPerDay, dayReq), ResetAt: w.dayEnd},
		{Name: TokensPerDay, Limit: p.TokensPerDay, Remaining: rem(p.TokensPerDay, dayTok), ResetAt: w.dayEnd},
	}
}

// retryAfter is the whole seconds from now until reset, at least 1.
func retryAfter(now, reset time.Time) int {
	return max(1, int(math.Ceil(reset.Sub(now).Seconds())))
}

func unavailable(err error) *wire.Error {
	return &wire.Error{Code: wire.CodeUnavailable, Message: "The quota service is unavailable; try again shortly.", RetryAfter: 2, Err: err}
}
