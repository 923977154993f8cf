// Package quota holds the plans (what each plan may use), the price table
// (what each model costs) and the Redis limiter that enforces both
// atomically across every gateway instance: requests, tokens, money and
// concurrent requests.
package quota

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/signals-sorcery/sas/shared/wire"
)

// Plan is one row of the plan table (contract, "Quotas and spend
// control"). The limits added after the first release are optional in a
// plans file; zero means the limit does not apply.
type Plan struct {
	RequestsPerMinute int64 `json:"requests_per_minute"`
	RequestsPerDay    int64 `json:"requests_per_day"`
	TokensPerDay      int64 `json:"tokens_per_day"`
	// MaxTokens caps a request's output (max_tokens, max_output_tokens).
	MaxTokens int64 `json:"max_tokens"`
	// MaxInputTokens caps a request's estimated prompt (0: no cap).
	MaxInputTokens int64 `json:"max_input_tokens,omitempty"`
	// ConcurrentRequests caps a user's requests in flight (0: no cap).
	ConcurrentRequests int64 `json:"concurrent_requests,omitempty"`
	// USDPerDay and USDPerMonth cap a user's spend (0: no cap).
	USDPerDay   Micros `json:"usd_per_day,omitempty"`
	USDPerMonth Micros `json:"usd_per_month,omitempty"`
	// ServiceTiers lists the OpenAI service_tier values a client may ask
	// for; any other is dropped (the upstream then uses the project's
	// default tier).
	ServiceTiers []string `json:"service_tiers,omitempty"`
	Models       []string `json:"models"`
	// TemplatesOnly: the plan runs server prompt templates only
	// (POST /v1/templates/{name}); raw chat completions and Responses API
	// requests are refused with templates_only.
	TemplatesOnly bool `json:"templates_only,omitempty"`
}

// Allows reports whether the plan may use model.
func (p Plan) Allows(model string) bool { return slices.Contains(p.Models, model) }

// Plans maps a plan name (free, pro) to its limits.
type Plans map[string]Plan

// For returns the limits of plan, and free's for a plan the table does not
// have (a row written by an older version, a typo in the database): the
// one resolution /v1/limits and the proxy both use.
func (ps Plans) For(plan string) Plan {
	if p, ok := ps[plan]; ok {
		return p
	}
	return ps[wire.PlanFree]
}

// OrBuiltIn returns plans and prices, each replaced by the built-in table
// when nil: the one place a caller without a configuration (tests, the dev
// stack) gets the defaults the configuration loader gives everyone else.
func OrBuiltIn(plans Plans, prices Prices) (Plans, Prices) {
	if plans == nil {
		plans = BuiltIn()
	}
	if prices == nil {
		prices = BuiltInPrices()
	}
	return plans, prices
}

// BuiltIn is the contract's plan table.
func BuiltIn() Plans {
	return Plans{
		wire.PlanFree: {RequestsPerMinute: 10, RequestsPerDay: 50, TokensPerDay: 20_000, MaxTokens: 1024,
			MaxInputTokens: 8000, ConcurrentRequests: 2, USDPerDay: 50_000, USDPerMonth: 500_000,
			Models: []string{"gpt-4o-mini"}},
		wire.PlanPro: {RequestsPerMinute: 60, RequestsPerDay: 2000, TokensPerDay: 2_000_000, MaxTokens: 4096,
			MaxInputTokens: 100_000, ConcurrentRequests: 8, USDPerDay: 3 * MicrosPerUSD, USDPerMonth: 30 * MicrosPerUSD,
			Models: []string{"gpt-4o-mini", "gpt-4o"}},
	}
}

// planFile is a plan as written in SAS_PLANS_FILE: money as decimal
// dollars, parsed exactly.
type planFile struct {
	RequestsPerMinute  *int64       `json:"requests_per_minute"`
	RequestsPerDay     *int64       `json:"requests_per_day"`
	TokensPerDay       *int64       `json:"tokens_per_day"`
	MaxTokens          *int64       `json:"max_tokens"`
	MaxInputTokens     *int64       `json:"max_input_tokens"`
	ConcurrentRequests *int64       `json:"concurrent_requests"`
	USDPerDay          *json.Number `json:"usd_per_day"`
	USDPerMonth        *json.Number `json:"usd_per_month"`
	ServiceTiers       []string     `json:"service_tiers"`
	Models             []string     `json:"models"`
	TemplatesOnly      bool         `json:"templates_only"`
}

// Load returns the built-in table, or the one in path (SAS_PLANS_FILE) when
// path is set. A file must define exactly the plans a user can have (free
// and pro), with every field of the first release, no unknown keys, no
// negative numbers, a positive max_tokens and at least one model; the
// newer limits are optional but positive when given. Every problem is
// reported.
func Load(path string) (Plans, error) {
	if path == "" {
		return BuiltIn(), nil
	}
	raw, err := readTable("SAS_PLANS_FILE", path, "plans")
	if err != nil {
		return nil, err
	}
	var problems []string
	plans := Plans{}
	for _, name := range []string{wire.PlanFree, wire.PlanPro} {
		if _, ok := raw[name]; !ok {
			problems = append(problems, fmt.Sprintf("plan %q is missing", name))
		}
	}
	for name, msg := range raw {
		if name != wire.PlanFree && name != wire.PlanPro {
			problems = append(problems, fmt.Sprintf("unknown plan %q (plans are free and pro)", name))
			continue
		}
		p, errs := parsePlan(msg)
		for _, e := range errs {
			problems = append(problems, name+": "+e)
		}
		plans[name] = p
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, errors.New("SAS_PLANS_FILE " + path + ": " + strings.Join(problems, "; "))
	}
	return plans, nil
}

func parsePlan(msg json.RawMessage) (Plan, []string) {
	d := json.NewDecoder(bytes.NewReader(msg))
	d.DisallowUnknownFields()
	var f planFile
	if err := d.Decode(&f); err != nil {
		return Plan{}, []string{err.Error()}
	}
	var problems []string
	p := Plan{ServiceTiers: f.ServiceTiers, Models: f.Models, TemplatesOnly: f.TemplatesOnly}
	for _, v := range []struct {
		name     string
		val      *int64
		dst      *int64
		required bool
		min      int64
	}{
		{"requests_per_minute", f.RequestsPerMinute, &p.RequestsPerMinute, true, 0},
		{"requests_per_day", f.RequestsPerDay, &p.RequestsPerDay, true, 0},
		{"tokens_per_day", f.TokensPerDay, &p.TokensPerDay, true, 0},
		{"max_tokens", f.MaxTokens, &p.MaxTokens, true, 1},
		{"max_input_tokens", f.MaxInputTokens, &p.MaxInputTokens, false, 1},
		{"concurrent_requests", f.ConcurrentRequests, &p.ConcurrentRequests, false, 1},
	} {
		switch {
		case v.val == nil && v.required:
			problems = append(problems, v.name+" is missing")
		case v.val == nil:
		case *v.val < v.min && v.min == 0:
			problems = append(problems, v.name+" is negative")
		case *v.val < v.min:
			problems = append(problems, fmt.Sprintf("%s must be at least %d", v.name, v.min))
		default:
			*v.dst = *v.val
		}
	}
	for _, v := range []struct {
		name string
		val  *json.Number
		dst  *Micros
	}{{"usd_per_day", f.USDPerDay, &p.USDPerDay}, {"usd_per_month", f.USDPerMonth, &p.USDPerMonth}} {
		if v.val == nil {
			continue
		}
		m, err := ParseUSD(string(*v.val))
		if err == nil && m == 0 {
			err = errors.New("must be above 0 (leave it out for no limit)")
		}
		if err != nil {
			problems = append(problems, v.name+" "+err.Error())
		}
		*v.dst = m
	}
	if f.Models == nil {
		problems = append(problems, "models is missing")
	} else if len(f.Models) == 0 || slices.Contains(f.Models, "") {
		problems = append(problems, "models must list at least one model, none empty")
	}
	if slices.Contains(f.ServiceTiers, "") {
		problems = append(problems, "service_tiers must not hold an empty value")
	}
	return p, problems
}

// readTable reads the JSON object of a table file (variable names it in
// errors; what says what its keys are).
func readTable(variable, path, what string) (map[string]json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", variable, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, fmt.Errorf("%s %s is not a JSON object of %s", variable, path, what)
	}
	return raw, nil
}
