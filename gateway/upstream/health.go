package upstream

import (
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Health rules of the contract.
const (
	// TripAfter consecutive failures open an upstream's circuit.
	TripAfter = 5
	// OpenFor is how long an open circuit skips its upstream before one
	// request probes it (half-open).
	OpenFor = 30 * time.Second
	// DefaultCooling keeps an upstream that answered 429 without a
	// Retry-After out of rotation.
	DefaultCooling = 5 * time.Second
)

// Result is how one attempt at an upstream went, for its health.
type Result int

// Results.
const (
	// Served: the upstream answered (2xx, or the client's fault).
	Served Result = iota
	// Failed: it could not serve (refused, reset, 5xx, 401/403, 429, no
	// headers in time).
	Failed
	// Abandoned: the client left first; says nothing of the upstream.
	Abandoned
)

// Health is the state of each upstream on this instance: cooling until a
// 429's Retry-After has passed, and a circuit breaker (sony/gobreaker:
// TripAfter consecutive failures open it for OpenFor, then one request
// probes). Its clock is time.Now, which gobreaker reads itself: tests run
// it in a testing/synctest bubble, whose clock they move. Safe for
// concurrent use.
type Health struct {
	onCircuit func(upstream string, open bool)
	mu        sync.Mutex
	states    map[string]*state
}

type state struct {
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}]
	coolUntil time.Time
	openUntil time.Time
}

// HealthOptions configure a Health.
type HealthOptions struct {
	// OnCircuit is told when an upstream's circuit opens (true) and when
	// it closes again (false), for the metrics. It is called under the
	// breaker's lock: it must not call back into the Health.
	OnCircuit func(upstream string, open bool)
}

// NewHealth tracks the upstreams of names, all in rotation.
func NewHealth(names []string, o HealthOptions) *Health {
	h := &Health{onCircuit: o.OnCircuit, states: map[string]*state{}}
	if h.onCircuit == nil {
		h.onCircuit = func(string, bool) {}
	}
	for _, name := range names {
		s := &state{}
		s.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        name,
			MaxRequests: 1, // one probe when half-open
			Timeout:     OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= TripAfter },
			IsExcluded:  func(err error) bool { return errors.Is(err, errAbandoned) },
			OnStateChange: func(name string, _, to gobreaker.State) {
				if to == gobreaker.StateOpen {
					h.mu.Lock()
					s.openUntil = time.Now().Add(OpenFor)
					h.mu.Unlock()
				}
				// Half-open still skips all but the probe: open for the
				// operator until it closes.
				h.onCircuit(name, to != gobreaker.StateClosed)
			},
		})
		h.states[name] = s
	}
	return h
}

var (
	errFailed    = errors.New("upstream failed")
	errAbandoned = errors.New("client gone")
)

// Try asks whether upstream may be tried now. When it may, done must be
// called once with the attempt's result; cool, with Failed, keeps the
// upstream out of rotation that long (a 429's Retry-After; 0: not at all).
func (h *Health) Try(upstream string) (done func(r Result, cool time.Duration), ok bool) {
	s := h.states[upstream]
	if s == nil {
		return nil, false
	}
	h.mu.Lock()
	cooling := time.Now().Before(s.coolUntil)
	h.mu.Unlock()
	if cooling {
		return nil, false
	}
	report, err := s.breaker.Allow()
	if err != nil {
		return nil, false
	}
	var once sync.Once
	return func(r Result, cool time.Duration) {
		once.Do(func() {
			switch r {
			case Served:
				report(nil)
			case Abandoned:
				report(errAbandoned)
			default:
				report(errFailed)
				if cool > 0 {
					h.mu.Lock()
					s.coolUntil = time.Now().Add(cool)
					h.mu.Unlock()
				}
			}
		})
	}, true
}

// Back is when upstream returns to rotation: zero when it is in rotation
// now (or its circuit waits for a probe).
func (h *Health) Back(upstream string) time.Time {
	s := h.states[upstream]
	if s == nil {
		return time.Time{}
	}
	// The breaker's state first, without h.mu: the breaker calls
	// OnStateChange, which takes h.mu, under its own lock.
	open := s.breaker.State() == gobreaker.StateOpen
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	var back time.Time
	if now.Before(s.coolUntil) {
		back = s.coolUntil
	}
	if open && s.openUntil.After(back) {
		back = s.openUntil
	}
	return back
}
