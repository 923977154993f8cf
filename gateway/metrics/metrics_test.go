package metrics_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/signals-sorcery/sas/gateway/metrics"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// TestLabelsFromFixedSets: whatever a caller passes, each label takes a
// value from its set or "other": known values pass through, made-up ones
// (a client's method or model name, an unknown reason) collapse into one
// series.
func TestLabelsFromFixedSets(t *testing.T) {
	m := metrics.New()
	m.AllowModels("gpt-4o-mini", "gpt-4o")
	for _, junk := range []string{"FOO", strings.Repeat("X", 64<<10), "get", "gpt-5-secret", "", "🙂"} {
		m.Request("", junk, 405, time.Millisecond)
		m.TokenRejected(junk)
		m.QuotaRejected(junk, junk)
		m.Upstream(junk, junk, time.Second, 10, junk)
		m.Spend(junk, junk, 0.5)
		m.DependencyError(junk)
	}
	m.Request("/v1/me", "GET", 200, time.Millisecond)
	m.TokenRejected("expired")
	m.QuotaRejected("pro", "usd_per_day")
	m.Upstream("gpt-4o", "complete", time.Second, 10, "upstream")
	m.Spend("gpt-4o", "pro", 0.25)
	m.DependencyError("redis")

	got := scrape(t, m)
	for _, want := range []string{
		`sas_http_requests_total{method="other",route="unmatched",status="405"} 6`,
		`sas_http_requests_total{method="GET",route="/v1/me",status="200"} 1`,
		`sas_token_rejections_total{reason="other"} 6`,
		`sas_token_rejections_total{reason="expired"} 1`,
		`sas_quota_rejections_total{limit="other",plan="other"} 6`,
		`sas_quota_rejections_total{limit="usd_per_day",plan="pro"} 1`,
		`sas_upstream_duration_seconds_count{model="other",outcome="other"} 6`,
		`sas_upstream_duration_seconds_count{model="gpt-4o",outcome="complete"} 1`,
		`sas_upstream_tokens_total{model="other",source="other"} 60`,
		`sas_spend_usd_total{model="other",plan="other"} 3`,
		`sas_spend_usd_total{model="gpt-4o",plan="pro"} 0.25`,
		`sas_dependency_errors_total{dependency="other"} 6`,
		`sas_dependency_errors_total{dependency="redis"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(got, "FOO") || strings.Contains(got, "gpt-5-secret") || strings.Contains(got, "XXXX") {
		t.Error("a made-up label value reached /metrics")
	}
}

// TestModelsOnlyOnceAllowed: before the proxy declares its models, every
// model is "other".
func TestModelsOnlyOnceAllowed(t *testing.T) {
	m := metrics.New()
	m.Spend("gpt-4o", "free", 1)
	m.AllowModels("gpt-4o")
	m.Spend("gpt-4o", "free", 1)
	got := scrape(t, m)
	for _, want := range []string{`sas_spend_usd_total{model="other",plan="free"} 1`, `sas_spend_usd_total{model="gpt-4o",plan="free"} 1`} {
		if !strings.Contains(got, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestAlertedCountersStartAtZero: the counters the alert rules watch with
// increase() are exported at 0 before their first event (Prometheus does
// not count a new series' first sample as an increase: a series born at 1
// would hide the first failure of each instance).
func TestAlertedCountersStartAtZero(t *testing.T) {
	m := metrics.New()
	m.AllowModels("gpt-4o")
	got := scrape(t, m)
	for _, want := range []string{`sas_dependency_errors_total{dependency="postgres"} 0`, `sas_dependency_errors_total{dependency="redis"} 0`,
		`sas_dependency_errors_total{dependency="issuer"} 0`, `sas_jwks_refreshes_total{outcome="error"} 0`,
		`sas_user_cache_requests_total{result="stale"} 0`, `sas_model_unavailable_total{model="gpt-4o"} 0`,
		`sas_settlement_over_reservation_total{endpoint="chat.completions",model="gpt-4o"} 0`,
		`sas_settlement_over_reservation_total{endpoint="responses",model="gpt-4o"} 0`} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestNilMetrics: every method is a no-op on nil.
func TestNilMetrics(t *testing.T) {
	var m *metrics.Metrics
	m.AllowModels("x")
	m.AllowUpstreams("x")
	m.UserCacheSize(func() int { return 1 })
	m.UserCache("hit")
	m.JWKSRefreshed(nil)
	m.ModelUnavailable("x")
	m.Request("", "GET", 200, 0)
	m.Spend("x", "free", 1)
}
