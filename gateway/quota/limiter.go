package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/signals-sorcery/sas/gateway"
	"github.com/signals-sorcery/sas/gateway/ledger"
	"github.com/signals-sorcery/sas/shared/wire"
)

// Limit names of the contract (error.limit, /v1/limits).
const (
	RequestsPerMinute  = "requests_per_minute"
	RequestsPerDay     = "requests_per_day"
	TokensPerDay       = "tokens_per_day"
	USDPerDay          = "usd_per_day"
	USDPerMonth        = "usd_per_month"
	ConcurrentRequests = "concurrent_requests"
	MaxInputTokens     = "max_input_tokens"
)

// DefaultSlotLease is how long a request in flight holds its concurrency
// slot after its last renewal; the proxy renews three times a lease while
// the request runs. A slot held by an instance that died is free again
// within the lease (the contract promises two minutes).
const DefaultSlotLease = time.Minute

// Limiter enforces a Plan in Redis with reservations: admission reserves a
// request's worst case (its prompt estimate plus its output cap, in tokens
// and in dollars) next to everything already charged and everything still
// in flight, and settlement replaces the reservation with what the request
// really cost. Each is one Lua script — one round trip, atomic across any
// number of gateway instances sharing the Redis — so N instances never
// admit more than a limit, and concurrency can only overshoot a budget by
// what the upstream reports beyond the reservations.
//
// Reservations are added to the same counters as charges (a request in
// flight counts as if it cost its reservation), so a request whose
// instance dies before settling stays charged its reservation — the
// contract's rule for a request without reported usage.
//
// Windows are fixed and aligned: the calendar minute, the UTC day and the
// UTC month. That makes "remaining" and "reset_at" exact (what /v1/limits
// shows is what the next request meets) at the price of allowing up to 2×
// the per-minute rate across a minute boundary, which is acceptable for a
// throttle whose real budgets are the daily and monthly ones.
//
// Keys carry the user id in a hash tag ({…}) so one script's keys share a
// cluster slot.
type Limiter struct {
	rdb    *redis.Client
	now    func() time.Time
	lease  time.Duration
	stream string
}

// LimiterOptions configure a Limiter.
type LimiterOptions struct {
	// Now is the clock (time.Now when nil). It decides the windows and the
	// slot leases: instances must have synced clocks (Fly's machines do),
	// or their minutes disagree by their skew.
	Now func() time.Time
	// SlotLease is how long a concurrency slot outlives its last renewal
	// (DefaultSlotLease when zero).
	SlotLease time.Duration
	// UsageStream, when set, is the Redis stream that Settle appends each
	// settlement's usage event to, in the same script (the ledger's input).
	UsageStream string
}

// NewLimiter returns a Limiter on rdb.
func NewLimiter(rdb *redis.Client, o LimiterOptions) *Limiter {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SlotLease <= 0 {
		o.SlotLease = DefaultSlotLease
	}
	return &Limiter{rdb: rdb, now: o.Now, lease: o.SlotLease, stream: o.UsageStream}
}

// RenewEvery is how often a request in flight should renew its slot: three
// times a lease, so one failed renewal does not lose it.
func (l *Limiter) RenewEvery() time.Duration { return l.lease / 3 }

// Usage is a limit's state for one user. Money limits (usd_*) are in
// micro-dollars here and in dollars in JSON.
type Usage struct {
	Name      string
	Limit     int64
	Remaining int64
	ResetAt   time.Time
}

// Money reports whether u counts micro-dollars.
func (u Usage) Money() bool { return u.Name == USDPerDay || u.Name == USDPerMonth }

// MarshalJSON writes the /v1/limits entry: money as dollars.
func (u Usage) MarshalJSON() ([]byte, error) {
	v := struct {
		Name      string    `json:"name"`
		Limit     any       `json:"limit"`
		Remaining any       `json:"remaining"`
		ResetAt   time.Time `json:"reset_at"`
	}{u.Name, u.Limit, u.Remaining, u.ResetAt}
	if u.Money() {
		v.Limit, v.Remaining = Micros(u.Limit), Micros(u.Remaining)
	}
	return json.Marshal(v)
}

// Reservation is the most a request may cost: its prompt estimate plus its
// output cap, and their price.
type Reservation struct {
	Tokens int64
	Cost   Micros
}

// Admission is an admitted (or refused) request: the usage after it, and
// what Settle and Renew need.
type Admission struct {
	Usage []Usage
	// Refused names the limit that refused the request, if one did.
	Refused string
	res     Reservation
	w       windows
	id      string // unique per admission
	slot    string // concurrency slot member (id); "" when the plan has no cap
}

// ID is unique to this admission: the usage event's id and the slot's
// name.
func (a Admission) ID() string { return a.id }

// Reserved is what the admission reserved.
func (a Admission) Reserved() Reservation { return a.res }

// HoldsSlot reports whether the admission holds a concurrency slot (the
// plan caps concurrent requests), which Renew keeps and Settle frees.
func (a Admission) HoldsSlot() bool { return a.slot != "" }

// Settlement is what an admitted request really cost.
type Settlement struct {
	Tokens int64
	Cost   Micros
	// ReturnRequest gives the day's request back too (the upstream could
	// not serve it). The minute's request is never given back.
	ReturnRequest bool
	// Event, when set and the limiter has a usage stream, is appended to
	// the stream in the same atomic step as the charge.
	Event *gateway.UsageEvent
}

// Tightest returns the request or token limit with the least remaining as
// a fraction of its limit (for the RateLimit-* headers; money is shown in
// /v1/limits only); on a tie, the one that resets last, so that a client
// waiting for it is not sent back too early.
func Tightest(us []Usage) Usage {
	var best Usage
	found := false
	for _, u := range us {
		if u.Money() {
			continue
		}
		if !found {
			best, found = u, true
			continue
		}
		// u.Remaining/u.Limit < best.Remaining/best.Limit, without division
		// (a zero limit is fully used).
		l, r := frac(u), frac(best)
		if l < r || (l == r && u.ResetAt.After(best.ResetAt)) {
			best = u
		}
	}
	return best
}

func frac(u Usage) float64 {
	if u.Limit <= 0 {
		return 0
	}
	return float64(u.Remaining) / float64(u.Limit)
}

type windows struct {
	minute, dayReq, dayTok, dayUSD, monthUSD, slots string
	tag                                             string // the user's key prefix
	minuteEnd, dayEnd, monthEnd                     time.Time
}

// keys are the scripts' KEYS for the admission id: the counters, the
// slots, and the admission's own key, which makes a retried script (the
// client retries a command whose reply was lost) a no-op.
func (w windows) keys(id string) []string {
	return []string{w.minute, w.dayReq, w.dayTok, w.dayUSD, w.monthUSD, w.slots, w.tag + "a:" + id}
}

// admissionTTL bounds how long an admission can be settled: a request
// running longer stays charged its reservation. It must not outlive the
// counters it settles: the day's live until a day after the day ends.
const admissionTTL = 24 * time.Hour

func windowsAt(user string, now time.Time) windows {
	now = now.UTC()
	minuteStart := now.Truncate(time.Minute)
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	month := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	tag := "sas:q:{" + user + "}:"
	ymd, ym := day.Format("20060102"), month.Format("200601")
	return windows{
		minute:    tag + "m:" + strconv.FormatInt(minuteStart.Unix()/60, 10),
		dayReq:    tag + "rd:" + ymd,
		dayTok:    tag + "td:" + ymd,
		dayUSD:    tag + "ud:" + ymd,
		monthUSD:  tag + "um:" + ym,
		slots:     tag + "c",
		tag:       tag,
		minuteEnd: minuteStart.Add(time.Minute),
		dayEnd:    day.AddDate(0, 0, 1),
		monthEnd:  month.AddDate(0, 1, 0),
	}
}

// Verdicts of admitScript, in the order it checks them: the limit that
// resets last first, so that Retry-After names the wait that makes room.
const (
	admitted = iota
	refusedMonthUSD
	refusedDayUSD
	refusedDayTokens
	refusedDayRequests
	refusedMinute
	refusedConcurrent
)

// admitScript checks every limit against the counters plus the new
// reservation and, only if all pass, counts the request, adds its
// reservation and records the admission; counters are created with their
// expiry. A limit below 0 does not apply. Slots are a sorted set of request
// ids scored by lease expiry (ms); expired leases are dropped first. Run
// again for an admission it recorded (a retry), it changes nothing.
//
// KEYS: minute, day requests, day tokens, day µ$, month µ$, slots, admission.
// ARGV: 1–6 limits (per minute, per day, tokens/day, µ$/day, µ$/month,
// concurrent), 7 reserved tokens, 8 reserved µ$, 9 now ms, 10 lease end ms,
// 11 slot id, 12 minute TTL, 13 day TTL, 14 month TTL (s), 15 slots TTL (ms),
// 16 admission TTL (s).
// Returns {verdict, minute, day requests, day tokens, day µ$, month µ$, in flight}.
var admitScript = redis.NewScript(`
local raw = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local m, d, t, ud, um = tonumber(raw[1] or '0'), tonumber(raw[2] or '0'), tonumber(raw[3] or '0'), tonumber(raw[4] or '0'), tonumber(raw[5] or '0')
if redis.call('EXISTS', KEYS[7]) == 1 then
  return {0, m, d, t, ud, um, redis.call('ZCARD', KEYS[6])}
end
local lim = {}
for i = 1, 6 do lim[i] = tonumber(ARGV[i]) end
local rt, ru = tonumber(ARGV[7]), tonumber(ARGV[8])
local c = 0
if lim[6] >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', ARGV[9])
  c = redis.call('ZCARD', KEYS[6])
end
local v = 0
if lim[5] >= 0 and um + ru > lim[5] then v = 1
elseif lim[4] >= 0 and ud + ru > lim[4] then v = 2
elseif t + rt > lim[3] then v = 3
elseif d >= lim[2] then v = 4
elseif m >= lim[1] then v = 5
elseif lim[6] >= 0 and c >= lim[6] then v = 6
end
if v ~= 0 then return {v, m, d, t, ud, um, c} end
-- A counter read as missing is created with its expiry, in one call; one
-- that exists is added to (not at all for 0). No counter is ever left
-- without an expiry.
local function add(i, old, n, ttl)
  if not raw[i] then
    redis.call('SET', KEYS[i], n, 'EX', ttl)
  elseif n ~= 0 then
    redis.call('INCRBY', KEYS[i], n)
  end
  return old + n
end
m = add(1, m, 1, ARGV[12])
d = add(2, d, 1, ARGV[13])
t = add(3, t, rt, ARGV[13])
ud = add(4, ud, ru, ARGV[13])
um = add(5, um, ru, ARGV[14])
if lim[6] >= 0 then
  redis.call('ZADD', KEYS[6], ARGV[10], ARGV[11])
  redis.call('PEXPIRE', KEYS[6], ARGV[15])
  c = c + 1
end
redis.call('SET', KEYS[7], '1', 'EX', ARGV[16])
return {0, m, d, t, ud, um, c}
`)

// Admit reserves res for one request of user under plan p, or refuses it
// without consuming anything.
//
// Errors: *wire.Error rate_limited, quota_exceeded (with Limit and
// RetryAfter until the reset that makes room), too_many_concurrent, or
// unavailable when Redis cannot be reached — the gateway fails closed.
func (l *Limiter) Admit(ctx context.Context, user string, p Plan, res Reservation) (Admission, error) {
	now := l.now()
	w := windowsAt(user, now)
	keepDay := int64(w.dayEnd.Sub(now).Seconds()) + 86400 // yesterday stays readable for a day
	keepMonth := int64(w.monthEnd.Sub(now).Seconds()) + 86400
	id, slot := newID(), ""
	if p.ConcurrentRequests > 0 {
		slot = id
	}
	lease := now.Add(l.lease)
	r, err := admitScript.Run(ctx, l.rdb, w.keys(id),
		p.RequestsPerMinute, p.RequestsPerDay, p.TokensPerDay, optional(int64(p.USDPerDay)), optional(int64(p.USDPerMonth)), optional(p.ConcurrentRequests),
		res.Tokens, int64(res.Cost), now.UnixMilli(), lease.UnixMilli(), slot,
		120, keepDay, keepMonth, (l.lease + time.Minute).Milliseconds(), int64(admissionTTL.Seconds())).Int64Slice()
	if err != nil {
		// The script may have run with its reply lost (a timeout, the
		// caller gone): undo it, if it did, as a failed upstream call would.
		l.undo(ctx, Admission{res: res, w: w, id: id, slot: slot})
		return Admission{}, unavailable(err)
	}
	a := Admission{Usage: usage(p, w, r[1:6]), res: res, w: w, id: id, slot: slot}
	if r[0] == admitted {
		return a, nil
	}
	a.Refused, err = refusal(p, w, now, res, r)
	return a, err
}

// newID is a random (version 4) UUID: the admission's id, its slot's name
// and its usage event's key in the ledger.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// optional maps "no limit" (0) to the script's -1.
func optional(v int64) int64 {
	if v <= 0 {
		return -1
	}
	return v
}

func refusal(p Plan, w windows, now time.Time, res Reservation, r []int64) (string, error) {
	budget := func(name string, limit, used, need int64, reset time.Time, unit func(int64) string) (string, error) {
		msg := fmt.Sprintf("This request may use up to %s, and %s of your plan's %s remain", unit(need), unit(max(0, limit-used)), unit(limit))
		if need > limit {
			msg = fmt.Sprintf("This request may use up to %s, more than your plan's whole %s", unit(need), unit(limit))
		}
		return name, &wire.Error{Code: wire.CodeQuotaExceeded, Limit: name, RetryAfter: retryAfter(now, reset),
			Message: msg + " (" + name + "); send a shorter prompt or a lower max_tokens, or wait for the reset."}
	}
	usd := func(v int64) string { return "$" + Micros(v).String() }
	tok := func(v int64) string { return strconv.FormatInt(v, 10) + " tokens" }
	switch r[0] {
	case refusedMonthUSD:
		return budget(USDPerMonth, int64(p.USDPerMonth), r[5], int64(res.Cost), w.monthEnd, usd)
	case refusedDayUSD:
		return budget(USDPerDay, int64(p.USDPerDay), r[4], int64(res.Cost), w.dayEnd, usd)
	case refusedDayTokens:
		return budget(TokensPerDay, p.TokensPerDay, r[3], res.Tokens, w.dayEnd, tok)
	case refusedDayRequests:
		return RequestsPerDay, &wire.Error{Code: wire.CodeQuotaExceeded, Limit: RequestsPerDay, RetryAfter: retryAfter(now, w.dayEnd),
			Message: fmt.Sprintf("Daily request quota used up (%d per day); it resets at 00:00 UTC.", p.RequestsPerDay)}
	case refusedMinute:
		return RequestsPerMinute, &wire.Error{Code: wire.CodeRateLimited, Limit: RequestsPerMinute, RetryAfter: retryAfter(now, w.minuteEnd),
			Message: fmt.Sprintf("Too many requests: your plan allows %d per minute.", p.RequestsPerMinute)}
	default:
		return ConcurrentRequests, &wire.Error{Code: wire.CodeTooManyConcurrent, Limit: ConcurrentRequests, RetryAfter: 1,
			Message: fmt.Sprintf("Your plan allows %d requests at a time, and that many are in flight; retry when one ends.", p.ConcurrentRequests)}
	}
}

// settleScript replaces a reservation with the actual cost: it adds the
// differences to the counters, gives the day's request back when asked,
// frees the slot, and appends the usage event to the stream — once: it
// deletes the admission's key first and does nothing when it was gone (a
// retry, or an admission past admissionTTL, which stays charged). While
// the admission's key lives, its counters do (admissionTTL is shorter than
// any counter's life from the admission on), so settling never creates a
// counter without an expiry.
//
// KEYS: as admitScript, then the usage stream when there is an event.
// ARGV: 1 token delta, 2 µ$ delta, 3 "1" to give the day's request back,
// 4 slot id ("" for none), 5 the stream's MAXLEN, 6 the entry's field, 7 the
// event.
var settleScript = redis.NewScript(`
if redis.call('DEL', KEYS[7]) == 0 then
  if ARGV[4] ~= '' then redis.call('ZREM', KEYS[6], ARGV[4]) end
  return 0
end
local function add(k, n)
  if n ~= 0 then redis.call('INCRBY', k, n) end
end
local dt, du = tonumber(ARGV[1]), tonumber(ARGV[2])
add(KEYS[3], dt)
add(KEYS[4], du)
add(KEYS[5], du)
if ARGV[3] == '1' then add(KEYS[2], -1) end
if ARGV[4] ~= '' then redis.call('ZREM', KEYS[6], ARGV[4]) end
if KEYS[8] then
  redis.call('XADD', KEYS[8], 'MAXLEN', '~', ARGV[5], '*', ARGV[6], ARGV[7])
end
return 0
`)

// Settle replaces a's reservation with s and frees its concurrency slot.
// It applies to the windows of the admission (a request that started
// before midnight is settled on the day it was reserved). Errors:
// unavailable.
func (l *Limiter) Settle(ctx context.Context, a Admission, s Settlement) error {
	if a.w.dayTok == "" || a.Refused != "" {
		return nil
	}
	ret := "0"
	if s.ReturnRequest {
		ret = "1"
	}
	keys := a.w.keys(a.id)
	args := []any{s.Tokens - a.res.Tokens, int64(s.Cost - a.res.Cost), ret, a.slot, ledger.MaxLen}
	if s.Event != nil && l.stream != "" {
		keys = append(keys, l.stream)
		args = append(args, ledger.Field, ledger.Encode(*s.Event))
	}
	err := settleScript.Run(ctx, l.rdb, keys, args...).Err()
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// undo gives back an admission whose outcome is unknown. Settlement runs at
// most once per admission, so this is a no-op when the admission never
// happened.
func (l *Limiter) undo(ctx context.Context, a Admission) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = l.Settle(ctx, a, Settlement{ReturnRequest: true})
}

// renewScript extends a slot's lease if the slot is still held.
var renewScript = redis.NewScript(`
if redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], ARGV[2]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
`)

// Renew extends the lease of a's concurrency slot: a request that runs for
// longer than a lease keeps its slot as long as it is renewed. Errors:
// unavailable.
func (l *Limiter) Renew(ctx context.Context, a Admission) error {
	if a.slot == "" {
		return nil
	}
	lease := l.now().Add(l.lease)
	if err := renewScript.Run(ctx, l.rdb, []string{a.w.slots}, lease.UnixMilli(), a.slot, (l.lease + time.Minute).Milliseconds()).Err(); err != nil {
		return unavailable(err)
	}
	return nil
}

// Peek returns the user's current usage, reservations in flight included,
// without consuming anything. Errors: unavailable.
func (l *Limiter) Peek(ctx context.Context, user string, p Plan) ([]Usage, error) {
	w := windowsAt(user, l.now())
	vals, err := l.rdb.MGet(ctx, w.minute, w.dayReq, w.dayTok, w.dayUSD, w.monthUSD).Result()
	if err != nil {
		return nil, unavailable(err)
	}
	n := make([]int64, len(vals))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			n[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return usage(p, w, n), nil
}

// usage lists the plan's limits from the counters {minute, day requests,
// day tokens, day µ$, month µ$}; money limits only when the plan sets them.
func usage(p Plan, w windows, n []int64) []Usage {
	rem := func(limit, used int64) int64 { return max(0, limit-used) }
	us := []Usage{
		{Name: RequestsPerMinute, Limit: p.RequestsPerMinute, Remaining: rem(p.RequestsPerMinute, n[0]), ResetAt: w.minuteEnd},
		{Name: RequestsPerDay, Limit: p.RequestsPerDay, Remaining: rem(p.RequestsPerDay, n[1]), ResetAt: w.dayEnd},
		{Name: TokensPerDay, Limit: p.TokensPerDay, Remaining: rem(p.TokensPerDay, n[2]), ResetAt: w.dayEnd},
	}
	if p.USDPerDay > 0 {
		us = append(us, Usage{Name: USDPerDay, Limit: int64(p.USDPerDay), Remaining: rem(int64(p.USDPerDay), n[3]), ResetAt: w.dayEnd})
	}
	if p.USDPerMonth > 0 {
		us = append(us, Usage{Name: USDPerMonth, Limit: int64(p.USDPerMonth), Remaining: rem(int64(p.USDPerMonth), n[4]), ResetAt: w.monthEnd})
	}
	return us
}

// retryAfter is the whole seconds from now until reset, at least 1.
func retryAfter(now, reset time.Time) int {
	return max(1, int(math.Ceil(reset.Sub(now).Seconds())))
}

func unavailable(err error) *wire.Error {
	return &wire.Error{Code: wire.CodeUnavailable, Message: "The quota service is unavailable; try again shortly.", RetryAfter: 2, Err: err}
}
