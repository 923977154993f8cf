package quota

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Price is what a model costs, in dollars per million tokens (the unit of
// OpenAI's price list), held as micro-dollars per million tokens.
type Price struct {
	Input       Micros `json:"input"`
	CachedInput Micros `json:"cached_input"`
	Output      Micros `json:"output"`
	// EstimateMargin multiplies the prompt estimate of a model that is not
	// tokenized with o200k_base (0 or 1: none).
	EstimateMargin float64 `json:"estimate_margin,omitempty"`
}

// Prices maps a model name to its price.
type Prices map[string]Price

// BuiltInPrices is the contract's price table (OpenAI's standard tier).
func BuiltInPrices() Prices {
	return Prices{
		"gpt-4o-mini": {Input: 150_000, CachedInput: 75_000, Output: 600_000},
		"gpt-4o":      {Input: 2_500_000, CachedInput: 1_250_000, Output: 10_000_000},
	}
}

// Cost is the price of a request's tokens, rounded up to a whole
// micro-dollar: input tokens include the cached ones, which are billed at
// the cached price.
func (p Price) Cost(input, cachedInput, output int64) Micros {
	cachedInput = min(max(cachedInput, 0), input)
	pico := (input-cachedInput)*int64(p.Input) + cachedInput*int64(p.CachedInput) + output*int64(p.Output)
	return Micros((pico + 999_999) / 1_000_000)
}

// LoadPrices returns the built-in table, or the one in path
// (SAS_PRICES_FILE) when path is set: a JSON object of models, each with
// input, cached_input and output in dollars per million tokens.
func LoadPrices(path string) (Prices, error) {
	if path == "" {
		return BuiltInPrices(), nil
	}
	raw, err := readTable("SAS_PRICES_FILE", path, "models")
	if err != nil {
		return nil, err
	}
	var problems []string
	prices := Prices{}
	for model, msg := range raw {
		p, errs := ParsePrice(msg)
		for _, e := range errs {
			problems = append(problems, model+": "+e)
		}
		prices[model] = p
	}
	if len(prices) == 0 && len(problems) == 0 {
		problems = append(problems, "no model is priced")
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, errors.New("SAS_PRICES_FILE " + path + ": " + strings.Join(problems, "; "))
	}
	return prices, nil
}

// ParsePrice reads one price: input, cached_input and output in dollars per
// million tokens, and an optional estimate_margin (default 1, from 1 to
// 10). It returns every problem found, each naming the field.
func ParsePrice(msg json.RawMessage) (Price, []string) {
	var problems []string
	var fields map[string]json.RawMessage
	_ = json.Unmarshal(msg, &fields)
	for _, f := range []string{"input", "cached_input", "output"} {
		if _, ok := fields[f]; !ok {
			problems = append(problems, f+" is missing")
		}
	}
	d := json.NewDecoder(bytes.NewReader(msg))
	d.DisallowUnknownFields()
	var in struct{ Input, CachedInput, Output, Margin json.Number }
	if err := d.Decode(&struct {
		Input       *json.Number `json:"input"`
		CachedInput *json.Number `json:"cached_input"`
		Output      *json.Number `json:"output"`
		Margin      *json.Number `json:"estimate_margin"`
	}{&in.Input, &in.CachedInput, &in.Output, &in.Margin}); err != nil {
		return Price{}, append(problems, err.Error())
	}
	var p Price
	for _, f := range []struct {
		name string
		raw  json.Number
		dst  *Micros
	}{{"input", in.Input, &p.Input}, {"cached_input", in.CachedInput, &p.CachedInput}, {"output", in.Output, &p.Output}} {
		if f.raw == "" {
			continue // reported as missing
		}
		v, err := ParseUSD(string(f.raw))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %v", f.name, err))
		}
		*f.dst = v
	}
	if in.Margin != "" {
		m, err := in.Margin.Float64()
		if err != nil || m < 1 || m > 10 {
			problems = append(problems, "estimate_margin must be a number from 1 to 10")
		}
		p.EstimateMargin = m
	}
	return p, problems
}

// Estimate is a prompt estimate made with o200k_base, raised by the
// model's estimate_margin (for models tokenized otherwise).
func (p Price) Estimate(tokens int64) int64 {
	if p.EstimateMargin <= 1 {
		return tokens
	}
	return int64(math.Ceil(float64(tokens) * p.EstimateMargin))
}

// Unpriced lists the models of plans that prices lacks ("free: gpt-4o"),
// sorted: each would be served without its cost being known.
func Unpriced(plans Plans, prices Prices) []string {
	var out []string
	for name, p := range plans {
		for _, m := range p.Models {
			if _, ok := prices[m]; !ok {
				out = append(out, name+": "+m)
			}
		}
	}
	slices.Sort(out)
	return out
}
