// Package grafana generates deploy/grafana/sas-gateway.json, the gateway's
// Grafana dashboard, from the table of panels below: one place to read
// every query, and JSON that stays consistent (ids, layout, the data
// source variable on every panel) however the table changes.
//
// Regenerate after editing the table: go test ./deploy/grafana -update.
// The tests check the committed file is what the table generates, that it
// has the shape Grafana imports, and — against a real Prometheus scraping
// a gateway under load — that every query is valid and returns data.
package grafana

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Panel is one graph of the dashboard.
type Panel struct {
	Title       string
	Description string
	// Unit is Grafana's unit id: reqps, ops, s, currencyUSD, short,
	// bytes, percentunit, none.
	Unit    string
	Targets []Target
	// Width in Grafana's 24 columns (default 8); Stat draws one number.
	Width int
	Stat  bool
}

// Target is one query of a panel. Expr may use $__rate_interval and
// $sel, replaced by the label selector of the dashboard's app variable.
type Target struct {
	Expr   string
	Legend string
}

// Row is a titled group of panels.
type Row struct {
	Title  string
	Panels []Panel
}

// sel restricts a metric to the app chosen in the dashboard (on Fly's
// Prometheus every series carries its app; elsewhere "All" matches series
// without the label too).
const sel = `app=~"$app"`

// notDev leaves out the routes only `sas-gateway dev` serves (its
// identity provider and dev upstreams share the gateway's router).
const notDev = `route!~"/dev/.*"`

// rate is the per-second rate of a counter over Grafana's rate interval.
func rate(metric string, matchers ...string) string {
	return "rate(" + metric + "{" + strings.Join(append([]string{sel}, matchers...), ",") + "}[$__rate_interval])"
}

// quantile is histogram_quantile(q) of a histogram, by the labels given.
func quantile(q, histogram, by string) string {
	b := "le"
	if by != "" {
		b += ", " + by
	}
	return "histogram_quantile(" + q + ", sum by (" + b + ") (" + rate(histogram+"_bucket") + "))"
}

// Rows are the dashboard's rows, in order.
var Rows = []Row{
	{"Traffic", []Panel{
		{Title: "Requests by route and status", Unit: "reqps", Width: 12, Targets: []Target{
			{"sum by (route, status) (" + rate("sas_http_requests_total", notDev) + ")", "{{route}} {{status}}"}}},
		{Title: "5xx share of requests", Unit: "percentunit", Width: 6,
			Description: "Answers with a 5xx status over all answers. The SASServerErrorRate alert fires above 2 %.",
			Targets:     []Target{{"(sum(" + rate("sas_http_requests_total", `status=~"5.."`) + ") or vector(0)) / sum(" + rate("sas_http_requests_total") + ")", "5xx share"}}},
		{Title: "Gateway overhead p50 / p99", Unit: "s", Width: 6,
			Description: "sas_gateway_overhead_seconds: a metered request's wall time minus the time it waited on upstreams — what the gateway itself costs.",
			Targets: []Target{
				{quantile("0.5", "sas_gateway_overhead_seconds", "endpoint"), "p50 {{endpoint}}"},
				{quantile("0.99", "sas_gateway_overhead_seconds", "endpoint"), "p99 {{endpoint}}"}}},
		{Title: "Latency p99 by route", Unit: "s", Width: 12,
			Description: "Whole requests as clients see them; streams until their last byte.",
			Targets:     []Target{{"histogram_quantile(0.99, sum by (le, route) (" + rate("sas_http_request_duration_seconds_bucket", notDev) + "))", "{{route}}"}}},
		{Title: "Tokens refused by reason", Unit: "reqps", Width: 12,
			Description: "expired is normal; signature, issuer or audience rising means a misconfiguration or someone else's tokens.",
			Targets:     []Target{{"sum by (reason) (" + rate("sas_token_rejections_total") + ")", "{{reason}}"}}},
	}},
	{"Upstreams", []Panel{
		{Title: "Upstream attempts by outcome", Unit: "reqps", Width: 12, Targets: []Target{
			{"sum by (upstream, outcome) (" + rate("sas_upstream_requests_total") + ")", "{{upstream}} {{outcome}}"}}},
		{Title: "Upstream time to headers p50 / p99", Unit: "s", Width: 12, Targets: []Target{
			{quantile("0.5", "sas_upstream_latency_seconds", "upstream"), "p50 {{upstream}}"},
			{quantile("0.99", "sas_upstream_latency_seconds", "upstream"), "p99 {{upstream}}"}}},
		{Title: "Failovers", Unit: "ops", Targets: []Target{
			{"sum by (from, to, reason) (" + rate("sas_upstream_failovers_total") + ")", "{{from}} → {{to}} ({{reason}})"}}},
		{Title: "Circuit open (1: out of rotation)", Unit: "none", Targets: []Target{
			{"max by (upstream) (sas_upstream_circuit_open{" + sel + "})", "{{upstream}}"}}},
		{Title: "Models with every upstream out", Unit: "reqps",
			Description: "Requests answered 503 upstream_unavailable: no upstream of the model was in rotation.",
			Targets:     []Target{{"sum by (model) (" + rate("sas_model_unavailable_total") + ")", "{{model}}"}}},
		{Title: "Completions by model and outcome", Unit: "reqps", Width: 24, Targets: []Target{
			{"sum by (model, outcome) (" + rate("sas_upstream_duration_seconds_count") + ")", "{{model}} {{outcome}}"}}},
	}},
	{"Spend", []Panel{
		{Title: "Spend per hour by model and plan", Unit: "currencyUSD", Width: 10,
			Description: "The rate of sas_spend_usd_total, in dollars per hour, at the gateway's price table.",
			Targets:     []Target{{"sum by (model, plan) (" + rate("sas_spend_usd_total") + ") * 3600", "{{model}} {{plan}}"}}},
		{Title: "Tokens per hour by model and source", Unit: "short", Width: 10,
			Description: "source=reservation: the upstream reported no usage and the whole reservation was charged.",
			Targets:     []Target{{"sum by (model, source) (" + rate("sas_upstream_tokens_total") + ") * 3600", "{{model}} {{source}}"}}},
		{Title: "Spend, last 24 h", Unit: "currencyUSD", Width: 4, Stat: true, Targets: []Target{
			{"sum(increase(sas_spend_usd_total{" + sel + "}[24h]))", "spend"}}},
	}},
	{"Limits", []Panel{
		{Title: "Admissions refused by plan and limit", Unit: "reqps", Width: 12, Targets: []Target{
			{"sum by (plan, limit) (" + rate("sas_quota_rejections_total") + ")", "{{plan}} {{limit}}"}}},
		{Title: "Usage above its reservation", Unit: "short", Width: 12,
			Description: "Settlements charged above what was reserved, in the last hour: an estimate that missed, or an upstream over-reporting.",
			Targets:     []Target{{"sum by (endpoint, model) (increase(sas_settlement_over_reservation_total{" + sel + "}[1h]))", "{{endpoint}} {{model}}"}}},
	}},
	{"Ledger", []Panel{
		{Title: "Ledger backlog (events in Redis)", Unit: "short", Targets: []Target{
			{"max(sas_usage_stream_backlog{" + sel + "})", "backlog"}}},
		{Title: "Ledger lag p50 / p99", Unit: "s",
			Description: "From a request's settlement to its usage event committed in Postgres.",
			Targets: []Target{
				{quantile("0.5", "sas_usage_drain_latency_seconds", ""), "p50"},
				{quantile("0.99", "sas_usage_drain_latency_seconds", ""), "p99"}}},
		{Title: "Ledger writes and drain errors", Unit: "ops", Targets: []Target{
			{"sum(" + rate("sas_usage_events_recorded_total") + ")", "events recorded"},
			{"sum(" + rate("sas_usage_drain_errors_total") + ")", "drain errors"}}},
	}},
	{"Dependencies and caches", []Panel{
		{Title: "Dependency errors", Unit: "ops",
			Description: "Failed calls to Postgres, Redis and the token issuer (postgres also counts users served from the stale cache during an outage).",
			Targets:     []Target{{"sum by (dependency) (" + rate("sas_dependency_errors_total") + ")", "{{dependency}}"}}},
		{Title: "User cache lookups", Unit: "ops", Targets: []Target{
			{"sum by (result) (" + rate("sas_user_cache_requests_total") + ")", "{{result}}"}}},
		{Title: "Users cached, JWKS fetches", Unit: "short", Targets: []Target{
			{"sum by (instance) (sas_user_cache_entries{" + sel + "})", "users cached {{instance}}"},
			{"sum by (outcome) (increase(sas_jwks_refreshes_total{" + sel + "}[1h]))", "JWKS fetches last hour, {{outcome}}"}}},
	}},
	{"Runtime", []Panel{
		{Title: "Memory", Unit: "bytes", Targets: []Target{
			{"process_resident_memory_bytes{" + sel + "}", "RSS {{instance}}"},
			{"go_memstats_heap_inuse_bytes{" + sel + "}", "heap in use {{instance}}"}}},
		{Title: "CPU and GC", Unit: "percentunit",
			Description: "CPU seconds per second, and the share of it spent in garbage collection pauses.",
			Targets: []Target{
				{"rate(process_cpu_seconds_total{" + sel + "}[$__rate_interval])", "CPU {{instance}}"},
				{"rate(go_gc_duration_seconds_sum{" + sel + "}[$__rate_interval])", "GC pauses {{instance}}"}}},
		{Title: "Goroutines", Unit: "short", Targets: []Target{
			{"go_goroutines{" + sel + "}", "{{instance}}"}}},
	}},
}

// panelHeight is every panel's height in Grafana's grid units (30 px).
const panelHeight = 7

// Generate returns the dashboard's JSON, as committed.
func Generate() []byte {
	type obj = map[string]any
	ds := obj{"type": "prometheus", "uid": "${datasource}"}
	var panels []any
	id, y := 1, 0
	for _, row := range Rows {
		panels = append(panels, obj{"id": id, "type": "row", "title": row.Title, "collapsed": false, "panels": []any{},
			"gridPos": obj{"x": 0, "y": y, "w": 24, "h": 1}})
		id++
		y++
		x := 0
		for _, p := range row.Panels {
			w := p.Width
			if w == 0 {
				w = 8
			}
			if x+w > 24 {
				x, y = 0, y+panelHeight
			}
			var targets []any
			for i, t := range p.Targets {
				targets = append(targets, obj{"refId": string(rune('A' + i)), "datasource": ds, "expr": t.Expr,
					"legendFormat": t.Legend, "range": true, "editorMode": "code"})
			}
			panel := obj{"id": id, "title": p.Title, "description": p.Description, "datasource": ds, "targets": targets,
				"gridPos": obj{"x": x, "y": y, "w": w, "h": panelHeight}}
			if p.Stat {
				panel["type"] = "stat"
				panel["fieldConfig"] = obj{"defaults": obj{"unit": p.Unit}, "overrides": []any{}}
				panel["options"] = obj{"reduceOptions": obj{"calcs": []string{"lastNotNull"}, "fields": "", "values": false},
					"colorMode": "value", "graphMode": "area", "textMode": "auto"}
			} else {
				panel["type"] = "timeseries"
				panel["fieldConfig"] = obj{"defaults": obj{"unit": p.Unit, "min": 0,
					"custom": obj{"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": false}},
					"overrides": []any{}}
				panel["options"] = obj{"legend": obj{"displayMode": "list", "placement": "bottom", "showLegend": true},
					"tooltip": obj{"mode": "multi", "sort": "desc"}}
			}
			panels = append(panels, panel)
			id++
			x += w
		}
		y += panelHeight
	}
	d := obj{
		"title":         "SAS gateway",
		"description":   "Traffic, upstreams, spend, limits, ledger, caches and runtime of sas-gateway. Generated by deploy/grafana (go test ./deploy/grafana -update); import it, do not edit it by hand.",
		"tags":          []string{"sas", "gateway"},
		"editable":      true,
		"graphTooltip":  1,
		"schemaVersion": 39,
		"version":       1,
		"refresh":       "1m",
		"time":          obj{"from": "now-6h", "to": "now"},
		"timezone":      "browser",
		"annotations":   obj{"list": []any{}},
		"links":         []any{},
		"templating": obj{"list": []any{
			obj{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
				"current": obj{}, "hide": 0, "refresh": 1, "options": []any{}},
			obj{"name": "app", "label": "Fly app", "type": "query", "datasource": ds,
				"definition": "label_values(sas_http_requests_total, app)",
				"query":      obj{"query": "label_values(sas_http_requests_total, app)", "refId": "app"},
				"includeAll": true, "allValue": ".*", "multi": false, "current": obj{}, "hide": 0, "refresh": 2,
				"options": []any{}, "sort": 1},
		}},
		"panels": panels,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		panic(err) // maps of strings, numbers and slices: cannot fail
	}
	return b.Bytes()
}
