package upstream_test

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/signals-sorcery/sas/gateway/upstream"
)

// Health reads time.Now, as gobreaker does: every test runs in a
// testing/synctest bubble, whose fake clock moves only when the test
// sleeps, so durations are checked exactly and nothing waits for real.

// tripAfter is the contract's count of consecutive failures that opens a
// circuit (written out, so that a change of upstream.TripAfter fails).
const tripAfter = 5

// circuit records the OnCircuit calls.
type circuit struct {
	mu     sync.Mutex
	events []string
}

func (c *circuit) on(name string, open bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	state := "closed"
	if open {
		state = "open"
	}
	c.events = append(c.events, name+" "+state)
}

// last is the latest state told for an upstream ("" if none).
func (c *circuit) last(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.events) - 1; i >= 0; i-- {
		if e := c.events[i]; len(e) > len(name) && e[:len(name)+1] == name+" " {
			return e[len(name)+1:]
		}
	}
	return ""
}

func (c *circuit) count(event string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.events {
		if e == event {
			n++
		}
	}
	return n
}

func newHealth(names ...string) (*upstream.Health, *circuit) {
	c := &circuit{}
	return upstream.NewHealth(names, upstream.HealthOptions{OnCircuit: c.on}), c
}

// report makes one attempt at name and reports r; the attempt must be
// allowed.
func report(t *testing.T, h *upstream.Health, name string, r upstream.Result, cool time.Duration) {
	t.Helper()
	done, ok := h.Try(name)
	if !ok {
		t.Fatalf("%s is out of rotation", name)
	}
	done(r, cool)
}

// inRotation reports whether name may be tried now. The attempt it makes
// is reported abandoned, which the breaker ignores (so a half-open
// circuit's probe stays free).
func inRotation(h *upstream.Health, name string) bool {
	done, ok := h.Try(name)
	if ok {
		done(upstream.Abandoned, 0)
	}
	return ok
}

// TestCircuitTripsAfterFiveFailures: four consecutive failures leave an
// upstream in rotation, the fifth opens its circuit for 30 s (Back says
// until when), after which one probe is let through at a time: its
// success closes the circuit, its failure opens it for another 30 s.
func TestCircuitTripsAfterFiveFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a", "b")
		start := time.Now()
		if !inRotation(h, "a") || !h.Back("a").IsZero() {
			t.Fatal("a new upstream is out of rotation")
		}
		for i := range tripAfter - 1 {
			report(t, h, "a", upstream.Failed, 0)
			if !inRotation(h, "a") || !h.Back("a").IsZero() {
				t.Fatalf("out of rotation after %d failures", i+1)
			}
		}
		if n := c.count("a open"); n != 0 {
			t.Fatalf("OnCircuit(a, true) before the fifth failure: %v", c.events)
		}
		report(t, h, "a", upstream.Failed, 0)
		if c.last("a") != "open" {
			t.Fatalf("the fifth failure did not tell OnCircuit: %v", c.events)
		}
		if _, ok := h.Try("a"); ok {
			t.Fatal("an open circuit is tried")
		}
		if got, want := h.Back("a"), start.Add(30*time.Second); !got.Equal(want) {
			t.Fatalf("Back = start+%v, want start+30s", got.Sub(start))
		}
		if !inRotation(h, "b") || !h.Back("b").IsZero() || c.last("b") != "" {
			t.Fatal("another upstream's circuit moved")
		}

		time.Sleep(29*time.Second + 900*time.Millisecond)
		if _, ok := h.Try("a"); ok {
			t.Fatal("tried before the 30 s are over")
		}
		if got, want := h.Back("a"), start.Add(30*time.Second); !got.Equal(want) {
			t.Fatalf("Back = start+%v, want start+30s", got.Sub(start))
		}

		time.Sleep(100*time.Millisecond + time.Millisecond) // 30 s are over
		probe, ok := h.Try("a")
		if !ok {
			t.Fatal("no probe after 30 s")
		}
		if _, ok := h.Try("a"); ok {
			t.Fatal("a second request while the probe is out")
		}
		if !h.Back("a").IsZero() {
			t.Errorf("Back = %v while waiting for a probe, want zero", h.Back("a"))
		}
		if c.last("a") != "open" {
			t.Errorf("closed before the probe answered: %v", c.events)
		}
		probe(upstream.Served, 0)
		if c.last("a") != "closed" {
			t.Fatalf("a served probe did not close the circuit: %v", c.events)
		}
		// Twice: closed again, it lets more than one request through.
		first, second := inRotation(h, "a"), inRotation(h, "a")
		if !first || !second || !h.Back("a").IsZero() {
			t.Fatal("out of rotation after a served probe")
		}

		// Trip again; this time the probe fails.
		for range tripAfter {
			report(t, h, "a", upstream.Failed, 0)
		}
		if c.last("a") != "open" || c.count("a open") < 2 {
			t.Fatalf("the second trip did not tell OnCircuit: %v", c.events)
		}
		time.Sleep(30*time.Second + time.Millisecond)
		failed := time.Now()
		report(t, h, "a", upstream.Failed, 0)
		if _, ok := h.Try("a"); ok {
			t.Fatal("tried right after a failed probe")
		}
		if got, want := h.Back("a"), failed.Add(30*time.Second); !got.Equal(want) {
			t.Fatalf("Back = %v after the failed probe, want it + 30s", got.Sub(failed))
		}
		if c.last("a") != "open" || c.count("a closed") != 1 {
			t.Fatalf("OnCircuit after a failed probe: %v", c.events)
		}
		time.Sleep(29 * time.Second)
		if _, ok := h.Try("a"); ok {
			t.Fatal("tried within 30 s of a failed probe")
		}
		time.Sleep(time.Second + time.Millisecond)
		if _, ok := h.Try("a"); !ok {
			t.Fatal("no probe 30 s after a failed probe")
		}
	})
}

// TestAbandonedProbeFreesTheSlot: a probe whose client left says nothing
// of the upstream: the next request probes instead, and the circuit stays
// half-open until one answers.
func TestAbandonedProbeFreesTheSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a")
		for range tripAfter {
			report(t, h, "a", upstream.Failed, 0)
		}
		time.Sleep(30*time.Second + time.Millisecond)
		report(t, h, "a", upstream.Abandoned, 0)
		if c.last("a") != "open" {
			t.Fatalf("an abandoned probe closed the circuit: %v", c.events)
		}
		probe, ok := h.Try("a")
		if !ok {
			t.Fatal("no new probe after an abandoned one")
		}
		probe(upstream.Served, 0)
		if c.last("a") != "closed" {
			t.Fatalf("not closed: %v", c.events)
		}
	})
}

// TestAbandonedIsNotAFailure: attempts whose client left neither count as
// failures nor break a run of them.
func TestAbandonedIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a")
		for range tripAfter {
			report(t, h, "a", upstream.Abandoned, 0)
		}
		for range tripAfter - 1 {
			report(t, h, "a", upstream.Failed, 0)
			report(t, h, "a", upstream.Abandoned, 0)
		}
		if !inRotation(h, "a") || c.count("a open") != 0 {
			t.Fatalf("5 abandoned and 4 failed attempts opened the circuit: %v", c.events)
		}
		report(t, h, "a", upstream.Failed, 0)
		if _, ok := h.Try("a"); ok || c.last("a") != "open" {
			t.Fatalf("the fifth failure (abandoned ones between) did not open the circuit: %v", c.events)
		}
	})
}

// TestSuccessResetsTheCount: failures must be consecutive.
func TestSuccessResetsTheCount(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a")
		for range 3 {
			for range tripAfter - 1 {
				report(t, h, "a", upstream.Failed, 0)
			}
			report(t, h, "a", upstream.Served, 0)
		}
		for range tripAfter - 1 {
			report(t, h, "a", upstream.Failed, 0)
		}
		if !inRotation(h, "a") || len(c.events) != 0 {
			t.Fatalf("failures separated by successes opened the circuit: %v", c.events)
		}
		report(t, h, "a", upstream.Failed, 0)
		if inRotation(h, "a") {
			t.Fatal("five consecutive failures did not open the circuit")
		}
	})
}

// TestDoneCountsOnce: a done called twice reports one result.
func TestDoneCountsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newHealth("a")
		done, ok := h.Try("a")
		if !ok {
			t.Fatal("not in rotation")
		}
		for range tripAfter {
			done(upstream.Failed, 0)
		}
		if !inRotation(h, "a") {
			t.Fatal("one attempt reported five times opened the circuit")
		}
	})
}

// TestCooling: a failure with a cooling time (a 429's Retry-After) keeps
// the upstream out of rotation for exactly that long, and Back says until
// when; a failure without one (a 5xx) does not cool at all.
func TestCooling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a", "b")
		start := time.Now()
		report(t, h, "a", upstream.Failed, 7*time.Second)
		if _, ok := h.Try("a"); ok {
			t.Fatal("tried while cooling")
		}
		if got := h.Back("a"); !got.Equal(start.Add(7 * time.Second)) {
			t.Fatalf("Back = start+%v, want start+7s", got.Sub(start))
		}
		if !inRotation(h, "b") {
			t.Fatal("another upstream cools")
		}
		time.Sleep(6*time.Second + 900*time.Millisecond)
		if _, ok := h.Try("a"); ok {
			t.Fatal("tried after 6.9 s of a 7 s cooling")
		}
		if got := h.Back("a"); !got.Equal(start.Add(7 * time.Second)) {
			t.Fatalf("Back = start+%v, want start+7s", got.Sub(start))
		}
		time.Sleep(100 * time.Millisecond)
		if !inRotation(h, "a") {
			t.Fatal("still cooling after 7 s")
		}
		if !h.Back("a").IsZero() {
			t.Fatalf("Back = %v after cooling", h.Back("a"))
		}
		if len(c.events) != 0 {
			t.Fatalf("cooling told OnCircuit: %v", c.events)
		}

		// Without a cooling time, a failure only counts.
		report(t, h, "a", upstream.Failed, 0)
		if !inRotation(h, "a") || !h.Back("a").IsZero() {
			t.Fatal("a failure without a cooling time cools")
		}
	})
}

// TestCoolingCountsAsFailure: a 429 is a failure too; when the circuit
// opens while cooling, Back is the later of the two.
func TestCoolingCountsAsFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a")
		start := time.Now()
		for range tripAfter - 1 {
			report(t, h, "a", upstream.Failed, 0)
		}
		report(t, h, "a", upstream.Failed, 45*time.Second)
		if c.last("a") != "open" {
			t.Fatalf("the fifth failure, a 429, did not open the circuit: %v", c.events)
		}
		if got := h.Back("a"); !got.Equal(start.Add(45 * time.Second)) {
			t.Fatalf("Back = start+%v, want the cooling's start+45s", got.Sub(start))
		}
		time.Sleep(31 * time.Second) // the circuit would probe; cooling holds
		if _, ok := h.Try("a"); ok {
			t.Fatal("tried while cooling")
		}
		time.Sleep(14 * time.Second)
		if _, ok := h.Try("a"); !ok {
			t.Fatal("no probe after cooling and the open circuit")
		}
	})
}

// TestUnknownUpstream: a name Health does not track is never tried.
func TestUnknownUpstream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := newHealth("a")
		if done, ok := h.Try("z"); ok || done != nil {
			t.Error("an unknown upstream is tried")
		}
		if !h.Back("z").IsZero() {
			t.Error("an unknown upstream has a Back")
		}
	})
}

// TestHealthConcurrent: many attempts at once, for the race detector; the
// run of failures opens the circuit once.
func TestHealthConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, c := newHealth("a", "b")
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if done, ok := h.Try("a"); ok {
					done(upstream.Failed, 0)
				}
				if done, ok := h.Try("b"); ok {
					done(upstream.Served, 0)
				}
			})
		}
		wg.Wait()
		if diff := cmp.Diff([]string{"a open"}, c.events); diff != "" {
			t.Errorf("OnCircuit (-want +got):\n%s", diff)
		}
	})
}

// TestBackWhileTripping: Back racing the failure that opens a circuit must
// not deadlock (Back once held Health's lock while asking the breaker,
// whose state change takes Health's lock under the breaker's own). Real
// goroutines, not a bubble: a bubble cannot see a mutex deadlock, and the
// clock does not matter here. It deadlocked within a few hundred rounds.
func TestBackWhileTripping(t *testing.T) {
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for range 2000 {
			h := upstream.NewHealth([]string{"a"}, upstream.HealthOptions{})
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						h.Back("a")
					}
				}
			})
			for range tripAfter {
				if done, ok := h.Try("a"); ok {
					done(upstream.Failed, 0)
				}
			}
			close(stop)
			wg.Wait()
		}
	}()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock: Back against a failure that opens the circuit")
	}
}
