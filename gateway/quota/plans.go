// Package quota holds the plans (what each plan may use) and the Redis
// limiter that enforces them atomically across every gateway instance.
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

// Plan is one row of the plan table (contract, "Quotas").
type Plan struct {
	RequestsPerMinute int64    `json:"requests_per_minute"`
	RequestsPerDay    int64    `json:"requests_per_day"`
	TokensPerDay      int64    `json:"tokens_per_day"`
	MaxTokens         int64    `json:"max_tokens"`
	Models            []string `json:"models"`
}

// Allows reports whether the plan may use model.
func (p Plan) Allows(model string) bool { return slices.Contains(p.Models, model) }

// Plans maps a plan name (free, pro) to its limits.
type Plans map[string]Plan

// BuiltIn is the contract's plan table.
func BuiltIn() Plans {
	return Plans{
		wire.PlanFree: {RequestsPerMinute: 10, RequestsPerDay: 50, TokensPerDay: 20_000, MaxTokens: 1024, Models: []string{"gpt-4o-mini"}},
		wire.PlanPro:  {RequestsPerMinute: 60, RequestsPerDay: 2000, TokensPerDay: 2_000_000, MaxTokens: 4096, Models: []string{"gpt-4o-mini", "gpt-4o"}},
	}
}

// Load returns the built-in table, or the one in path (SAS_PLANS_FILE) when
// path is set. A file must define exactly the plans a user can have (free
// and pro), with every field, no unknown keys, no negative numbers, a
// positive max_tokens and at least one model; every problem is reported.
func Load(path string) (Plans, error) {
	if path == "" {
		return BuiltIn(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("SAS_PLANS_FILE: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("SAS_PLANS_FILE %s is not a JSON object of plans: %w", path, err)
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
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(msg, &fields)
		for _, f := range []string{"requests_per_minute", "requests_per_day", "tokens_per_day", "max_tokens", "models"} {
			if _, ok := fields[f]; !ok {
				problems = append(problems, fmt.Sprintf("%s: %s is missing", name, f))
			}
		}
		d := json.NewDecoder(bytes.NewReader(msg))
		d.DisallowUnknownFields()
		var p Plan
		if err := d.Decode(&p); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		for f, v := range map[string]int64{"requests_per_minute": p.RequestsPerMinute, "requests_per_day": p.RequestsPerDay, "tokens_per_day": p.TokensPerDay} {
			if v < 0 {
				problems = append(problems, fmt.Sprintf("%s: %s is negative", name, f))
			}
		}
		if p.MaxTokens < 1 {
			problems = append(problems, fmt.Sprintf("%s: max_tokens must be at least 1", name))
		}
		if len(p.Models) == 0 || slices.Contains(p.Models, "") {
			problems = append(problems, fmt.Sprintf("%s: models must list at least one model, none empty", name))
		}
		plans[name] = p
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, errors.New("SAS_PLANS_FILE " + path + ": " + strings.Join(problems, "; "))
	}
	return plans, nil
}
