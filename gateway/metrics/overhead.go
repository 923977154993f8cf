package metrics

import (
	"context"
	"sync/atomic"
	"time"
)

// Overhead measures what the gateway itself costs one request: the time
// from the request's arrival to its end, minus the time spent waiting on
// upstreams (sending to them, their headers, reading their bodies). A
// slow upstream does not move it; the gateway's own work (authentication,
// parsing, admission and settlement in Redis, relaying) does.
//
// The HTTP layer starts one per request (StartOverhead) and observes it
// when the request ends (ObserveOverhead); the proxy marks the requests
// it meters and adds its waits. Requests not marked metered are not
// observed. Its methods are safe on a nil *Overhead; Waited also from
// other goroutines (a stream's reader adds its waits while the relay
// writes).
type Overhead struct {
	start time.Time
	// endpoint is set by the handler's goroutine, which also observes.
	endpoint string
	waited   atomic.Int64 // nanoseconds
}

type overheadKey struct{}

// StartOverhead returns ctx carrying a new Overhead started now.
func StartOverhead(ctx context.Context) (context.Context, *Overhead) {
	o := &Overhead{start: time.Now()}
	return context.WithValue(ctx, overheadKey{}, o), o
}

// OverheadFrom returns the Overhead of ctx, or nil.
func OverheadFrom(ctx context.Context) *Overhead {
	o, _ := ctx.Value(overheadKey{}).(*Overhead)
	return o
}

// Metered marks the request as metered on endpoint ("chat.completions",
// "responses"): it is observed when it ends.
func (o *Overhead) Metered(endpoint string) {
	if o != nil {
		o.endpoint = endpoint
	}
}

// Waited adds d spent waiting on an upstream.
func (o *Overhead) Waited(d time.Duration) {
	if o != nil {
		o.waited.Add(int64(d))
	}
}

// ObserveOverhead records o, if its request was metered, as ending now.
func (m *Metrics) ObserveOverhead(o *Overhead) {
	if m == nil || o == nil {
		return
	}
	if o.endpoint == "" {
		return
	}
	d := time.Since(o.start) - time.Duration(o.waited.Load())
	m.overhead.WithLabelValues(oneOf(endpoints, o.endpoint)).Observe(max(0, d).Seconds())
}
