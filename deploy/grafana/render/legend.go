package main

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var legendPattern = regexp.MustCompile(`\{\{\s*(.+?)\s*\}\}`)

// LegendName is a series' name as Grafana's Prometheus datasource gives it:
// the legendFormat with each {{label}} replaced by the series' value of
// that label (empty when it has none); with no legendFormat (or "__auto")
// the series' label set, name{a="1", b="2"}; and the query itself when that
// would be an empty {}.
func LegendName(format string, labels map[string]string, expr string) string {
	var name string
	if format == "" || format == "__auto" {
		name = LabelSet(labels)
	} else {
		name = legendPattern.ReplaceAllStringFunc(format, func(m string) string {
			return labels[legendPattern.FindStringSubmatch(m)[1]]
		})
	}
	if name == "{}" {
		return expr
	}
	return name
}

// LabelSet formats labels as Prometheus does: the metric name, then the
// other labels sorted by name in braces.
func LabelSet(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if len(keys) == 0 && labels["__name__"] != "" {
		return labels["__name__"]
	}
	var b strings.Builder
	b.WriteString(labels["__name__"])
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}
