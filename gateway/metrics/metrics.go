// Package metrics holds the gateway's Prometheus metrics, on a registry of
// its own (no package globals), served on METRICS_ADDR apart from the API.
// Every method is safe on a nil *Metrics, so components run without them in
// tests that do not care. Every label takes its values from a fixed set
// (labels.go), whatever the callers pass.
package metrics

import (
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the gateway's counters and histograms.
type Metrics struct {
	reg              *prometheus.Registry
	requests         *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	tokenRejections  *prometheus.CounterVec
	quotaRejections  *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	upstreamTokens   *prometheus.CounterVec
	spend            *prometheus.CounterVec
	dependencyErrors *prometheus.CounterVec
	usageRecorded    prometheus.Counter
	usageBacklog     prometheus.Gauge
	usageLatency     prometheus.Histogram
	usageErrors      prometheus.Counter
	overReservation  *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	failovers        *prometheus.CounterVec
	circuitOpen      *prometheus.GaugeVec
	upstreamLatency  *prometheus.HistogramVec
	modelUnavailable *prometheus.CounterVec
	overhead         *prometheus.HistogramVec
	userCache        *prometheus.CounterVec
	jwksRefreshes    *prometheus.CounterVec
	models           models
	upstreams        models
}

// New returns Metrics registered on a fresh registry, Go runtime and
// process collectors included.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sas_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sas_http_request_duration_seconds", Help: "HTTP request duration by route pattern (streams: until the last byte).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route"}),
		tokenRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sas_token_rejections_total", Help: "Bearer tokens refused, by reason.",
		}, []string{"reason"}),
		quotaRejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sas_quota_rejections_total", Help: "Requests refused by a quota, by plan and limit.",
		}, []string{"plan", "limit"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sas_upstream_duration_seconds", Help: "OpenAI calls, from sending to the end of the answer, by model and outcome.",
			Buckets: []float64{.1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
		}, []string{"model", "outcome"}),
		upstreamTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sas_upstream_tokens_total", Help: "Tokens charged, by model and source (upstream usage, or the reservation when the upstream reported none).",
		}, []string{"model", "source"}),
		spend: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sas_spend_usd_total", Help: "US dollars charged to users at the price table, by model and plan.",
		}, []string{"model", "plan"}),
		dependencyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sas_dependency_errors_total", Help: "Failed calls to Postgres, Redis and the token issuer.",
		}, []string{"dependency"}),
	}
	m.usageRecorded = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sas_usage_events_recorded_total", Help: "Usage events written to the Postgres ledger (each once).",
	})
	m.usageBacklog = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sas_usage_stream_backlog", Help: "Usage events in the Redis stream not yet in Postgres (sampled by each instance's drain).",
	})
	m.usageLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sas_usage_drain_latency_seconds", Help: "From a request's settlement to its usage event committed in Postgres.",
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 1800},
	})
	m.usageErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sas_usage_drain_errors_total", Help: "Failed attempts to move usage events from Redis to Postgres (retried).",
	})
	m.overReservation = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sas_settlement_over_reservation_total",
		Help: "Requests whose reported usage was charged above their reservation (tokens or money), by endpoint and model: an estimate that missed, or an upstream reporting more than it should.",
	}, []string{"endpoint", "model"})
	m.upstreamRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sas_upstream_requests_total",
		Help: "Attempts at an upstream, by upstream, model and outcome (served, refused, rate_limited, auth_failed, server_error, other, timeout, unreachable, empty_stream, skipped: out of rotation).",
	}, []string{"upstream", "model", "outcome"})
	m.failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sas_upstream_failovers_total", Help: "Requests moved from one upstream to the next before their first byte, by the reason the first failed.",
	}, []string{"from", "to", "reason"})
	m.circuitOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sas_upstream_circuit_open", Help: "1 while an upstream's circuit breaker is open or half-open on this instance (skipped but for one probe).",
	}, []string{"upstream"})
	m.upstreamLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "sas_upstream_latency_seconds", Help: "Time from sending a request to an upstream to its response headers.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 180},
	}, []string{"upstream"})
	m.modelUnavailable = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sas_model_unavailable_total",
		Help: "Requests answered 503 upstream_unavailable: every upstream of the model was out of rotation (circuit open, or cooling after a 429).",
	}, []string{"model"})
	m.overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sas_gateway_overhead_seconds",
		Help:    "What the gateway itself costs a metered request: its wall time (authentication included) minus the time spent waiting on upstreams, by endpoint.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	}, []string{"endpoint"})
	m.userCache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sas_user_cache_requests_total",
		Help: "User lookups of authenticated requests, by result: hit (memory), miss (read from Postgres), stale (from memory because Postgres was unavailable).",
	}, []string{"result"})
	m.jwksRefreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sas_jwks_refreshes_total",
		Help: "Fetches of the token issuer's JWKS (the first load, the hourly refetch, an unknown key id), by outcome: ok, error.",
	}, []string{"outcome"})
	m.reg.MustRegister(m.modelUnavailable, m.overhead, m.userCache, m.jwksRefreshes)
	// The series the alert rules watch with increase() exist from the
	// start, at 0: Prometheus does not count a series' first sample as an
	// increase, so a counter born at 1 would hide its first event.
	for d := range dependencies {
		m.dependencyErrors.WithLabelValues(d)
	}
	for _, o := range []string{"ok", "error"} {
		m.jwksRefreshes.WithLabelValues(o)
	}
	for r := range cacheResults {
		m.userCache.WithLabelValues(r)
	}
	m.reg.MustRegister(m.usageRecorded, m.usageBacklog, m.usageLatency, m.usageErrors, m.overReservation,
		m.upstreamRequests, m.failovers, m.circuitOpen, m.upstreamLatency)
	m.reg.MustRegister(m.requests, m.duration, m.tokenRejections, m.quotaRejections, m.upstreamDuration,
		m.upstreamTokens, m.spend, m.dependencyErrors, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// AllowModels adds models to the values the model label may take; any
// other model is counted as Other. The proxy declares its price table's
// models (the only ones it serves), so a client naming models cannot add
// series.
func (m *Metrics) AllowModels(names ...string) {
	if m == nil {
		return
	}
	m.models.allow(names)
	for _, n := range names {
		m.modelUnavailable.WithLabelValues(n)
		for e := range endpoints {
			m.overReservation.WithLabelValues(e, n)
		}
	}
}

// Request records a served request. route must be chi's pattern, never the
// raw path (whose ids would explode the series); "" counts as Unmatched.
// A method outside RFC 9110's counts as Other.
func (m *Metrics) Request(route, httpMethod string, status int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = Unmatched
	}
	m.requests.WithLabelValues(route, method(httpMethod), strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// TokenRejected records a refused bearer token ("missing", or the auth
// package's reason).
func (m *Metrics) TokenRejected(reason string) {
	if m != nil {
		m.tokenRejections.WithLabelValues(oneOf(tokenReasons, reason)).Inc()
	}
}

// QuotaRejected records a request refused by a limit.
func (m *Metrics) QuotaRejected(plan, limit string) {
	if m != nil {
		m.quotaRejections.WithLabelValues(oneOf(plans, plan), oneOf(limits, limit)).Inc()
	}
}

// Upstream records an OpenAI call and the tokens charged for it.
func (m *Metrics) Upstream(model, outcome string, d time.Duration, tokens int64, source string) {
	if m == nil {
		return
	}
	model = m.models.label(model)
	m.upstreamDuration.WithLabelValues(model, oneOf(outcomes, outcome)).Observe(d.Seconds())
	if tokens > 0 {
		m.upstreamTokens.WithLabelValues(model, oneOf(sources, source)).Add(float64(tokens))
	}
}

// Spend records the dollars a request was charged.
func (m *Metrics) Spend(model, plan string, usd float64) {
	if m != nil && usd > 0 {
		m.spend.WithLabelValues(m.models.label(model), oneOf(plans, plan)).Add(usd)
	}
}

// AllowUpstreams adds upstream names to the values the upstream labels may
// take (the configured table's).
func (m *Metrics) AllowUpstreams(names ...string) {
	if m == nil {
		return
	}
	m.upstreams.allow(names)
	for _, n := range names {
		m.circuitOpen.WithLabelValues(n).Set(0)
	}
}

// UpstreamAttempt records one attempt at an upstream: its outcome and, for
// an answer, the time to its headers (0: none).
func (m *Metrics) UpstreamAttempt(upstream, model, outcome string, headers time.Duration) {
	if m == nil {
		return
	}
	upstream = m.upstreams.label(upstream)
	m.upstreamRequests.WithLabelValues(upstream, m.models.label(model), oneOf(upstreamOutcomes, outcome)).Inc()
	if headers > 0 {
		m.upstreamLatency.WithLabelValues(upstream).Observe(headers.Seconds())
	}
}

// UpstreamSkipped records an upstream passed over: cooling or its circuit
// open.
func (m *Metrics) UpstreamSkipped(upstream, model string) {
	if m != nil {
		m.upstreamRequests.WithLabelValues(m.upstreams.label(upstream), m.models.label(model), "skipped").Inc()
	}
}

// Failover records a request moved from one upstream to the next.
func (m *Metrics) Failover(from, to, reason string) {
	if m != nil {
		m.failovers.WithLabelValues(m.upstreams.label(from), m.upstreams.label(to), oneOf(upstreamOutcomes, reason)).Inc()
	}
}

// CircuitOpen sets an upstream's circuit state.
func (m *Metrics) CircuitOpen(upstream string, open bool) {
	if m == nil {
		return
	}
	v := 0.0
	if open {
		v = 1
	}
	m.circuitOpen.WithLabelValues(m.upstreams.label(upstream)).Set(v)
}

// OverReservation records a settlement above its reservation.
func (m *Metrics) OverReservation(endpoint, model string) {
	if m != nil {
		m.overReservation.WithLabelValues(oneOf(endpoints, endpoint), m.models.label(model)).Inc()
	}
}

// DependencyError records a failed call to "postgres", "redis" or "issuer".
func (m *Metrics) DependencyError(dependency string) {
	if m != nil {
		m.dependencyErrors.WithLabelValues(oneOf(dependencies, dependency)).Inc()
	}
}

// UsageRecorded records n events committed to the ledger, and how long the
// oldest of them waited.
func (m *Metrics) UsageRecorded(n int, latencies ...time.Duration) {
	if m == nil {
		return
	}
	m.usageRecorded.Add(float64(n))
	for _, d := range latencies {
		m.usageLatency.Observe(d.Seconds())
	}
}

// UsageBacklog sets the number of events waiting in the stream.
func (m *Metrics) UsageBacklog(n int64) {
	if m != nil {
		m.usageBacklog.Set(float64(n))
	}
}

// UsageDrainError records a failed drain attempt.
func (m *Metrics) UsageDrainError() {
	if m != nil {
		m.usageErrors.Inc()
	}
}

// ModelUnavailable records a request refused because every upstream of
// its model was out of rotation.
func (m *Metrics) ModelUnavailable(model string) {
	if m != nil {
		m.modelUnavailable.WithLabelValues(m.models.label(model)).Inc()
	}
}

// UserCache records the result of a user lookup: "hit", "miss" or
// "stale".
func (m *Metrics) UserCache(result string) {
	if m != nil {
		m.userCache.WithLabelValues(oneOf(cacheResults, result)).Inc()
	}
}

// UserCacheSize reports the number of cached users, read at each scrape.
func (m *Metrics) UserCacheSize(size func() int) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sas_user_cache_entries", Help: "Users held in this instance's memory.",
		}, func() float64 { return float64(size()) }))
	}
}

// JWKSRefreshed records a fetch of the issuer's key set; err is its
// failure, or nil.
func (m *Metrics) JWKSRefreshed(err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.jwksRefreshes.WithLabelValues(outcome).Inc()
}

// PrivateHandler serves the private listener's routes: /metrics, and Go's
// profiler under /debug/pprof/ (never on the API's listener: the operator
// profiles a running machine over `fly proxy 9091`).
func (m *Metrics) PrivateHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}
