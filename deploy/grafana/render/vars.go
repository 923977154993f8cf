package main

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// varPattern matches Grafana's variable syntaxes: $name, ${name},
// ${name:format} and the deprecated [[name]] / [[name:format]].
var varPattern = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

// Substitute replaces the variables of vars in expr. A variable that vars
// does not know is left as written, so Prometheus rejects the query and
// the error shows it.
func Substitute(expr string, vars map[string]string) string {
	return varPattern.ReplaceAllStringFunc(expr, func(m string) string {
		sub := varPattern.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		if v, ok := vars[name]; ok {
			return v
		}
		return m
	})
}

// QueryVars is the set of variables a query sees: Grafana's built-in
// interval and range variables, the dashboard's own variables at their
// defaults, then the values given on the command line, which win.
func QueryVars(d *Dashboard, given map[string]string, start, end time.Time, step time.Duration, rateInterval string) map[string]string {
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		if val, ok := variableDefault(v); ok {
			vars[v.Name] = val
		}
	}
	if _, ok := vars["app"]; !ok {
		vars["app"] = ".*"
	}
	for k, v := range given {
		vars[k] = v
	}
	rng := end.Sub(start)
	vars["__interval"] = PromDuration(step)
	vars["__interval_ms"] = strconv.FormatInt(step.Milliseconds(), 10)
	vars["__rate_interval"] = rateInterval
	vars["__range"] = PromDuration(rng)
	vars["__range_s"] = strconv.FormatInt(int64(rng/time.Second), 10)
	vars["__range_ms"] = strconv.FormatInt(rng.Milliseconds(), 10)
	return vars
}

// variableDefault is the value the renderer gives a dashboard variable
// when the command line does not: a query variable (whose values would
// come from Prometheus) matches everything, its allValue or ".*"; a
// constant is its query; a custom, textbox or interval variable is its
// saved current value, "All" being its allValue or the alternation of its
// options. Datasource and ad hoc variables take no part in expressions.
func variableDefault(v Variable) (string, bool) {
	all := func() string {
		if v.AllValue != "" {
			return v.AllValue
		}
		var opts []string
		for _, o := range v.Options {
			for _, s := range jsonStrings(o.Value) {
				if s != "$__all" {
					opts = append(opts, s)
				}
			}
		}
		if len(opts) == 0 {
			return ".*"
		}
		return joinValues(opts)
	}
	switch v.Type {
	case "datasource", "adhoc":
		return "", false
	case "query":
		if v.AllValue != "" {
			return v.AllValue, true
		}
		return ".*", true
	case "constant":
		q := jsonStrings(v.Query)
		if len(q) == 0 {
			return "", true
		}
		return q[0], true
	default:
		cur := jsonStrings(v.Current.Value)
		if len(cur) == 0 {
			return "", false
		}
		for _, s := range cur {
			if s == "$__all" {
				return all(), true
			}
		}
		return joinValues(cur), true
	}
}

// joinValues formats a multi-value selection the way Grafana does for
// Prometheus: one value as is, several as a regex alternation.
func joinValues(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	return "(" + strings.Join(vs, "|") + ")"
}

// jsonStrings reads a JSON string or array of strings.
func jsonStrings(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		return ss
	}
	return nil
}

// PromDuration formats d as a Prometheus duration in the largest unit that
// divides it exactly ("1h", "90s", "1500ms").
func PromDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	units := []struct {
		name string
		size time.Duration
	}{
		{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}, {"h", time.Hour},
		{"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond},
	}
	for _, u := range units {
		if d%u.size == 0 {
			return strconv.FormatInt(int64(d/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}

// ParseTime reads a time given as RFC 3339, as unix seconds (fractions
// allowed), as "now", or as "now-<duration>" (a Go duration, e.g. now-15m).
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "now":
		return now, nil
	case strings.HasPrefix(s, "now-"):
		d, err := time.ParseDuration(s[len("now-"):])
		if err != nil {
			return time.Time{}, fmt.Errorf("time %q: %w", s, err)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2024-05-01T12:00:00Z), unix seconds, now or now-<duration>", s)
}
