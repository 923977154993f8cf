package main

import (
	"math"
	"strconv"
	"strings"
)

// A scale is one step of a unit's ladder: values from div up (to the next
// step's div) are shown divided by div, between prefix and suffix.
type scale struct {
	div            float64
	prefix, suffix string
}

// A unitFormat is how one Grafana unit id is shown: values are multiplied
// by factor into the ladder's base (seconds for "ms", say), zero uses
// steps[zero], and a value uses the largest step not above it.
type unitFormat struct {
	factor float64
	steps  []scale
	zero   int
}

func ladder(divs []float64, prefix string, suffixes ...string) []scale {
	out := make([]scale, len(suffixes))
	for i, s := range suffixes {
		out[i] = scale{div: divs[i], prefix: prefix, suffix: s}
	}
	return out
}

var (
	thousands = []float64{1, 1e3, 1e6, 1e9, 1e12, 1e15}
	kibis     = []float64{1, 1 << 10, 1 << 20, 1 << 30, 1 << 40, 1 << 50}
	timeSteps = []scale{
		{1e-9, "", " ns"}, {1e-6, "", " µs"}, {1e-3, "", " ms"}, {1, "", " s"},
		{60, "", " min"}, {3600, "", " hour"}, {86400, "", " day"},
	}
)

// countUnit is Grafana's simpleCountUnit: 1.5 req/s, 1.5K req/s, 2M req/s.
func countUnit(symbol string) unitFormat {
	return unitFormat{factor: 1, steps: ladder(thousands, "", " "+symbol, "K "+symbol, "M "+symbol, "B "+symbol, "T "+symbol)}
}

func currencyUnit(symbol string) unitFormat {
	return unitFormat{factor: 1, steps: ladder(thousands, symbol, "", "K", "M", "B", "T")}
}

func timeUnit(factor float64, zero int) unitFormat {
	return unitFormat{factor: factor, steps: timeSteps, zero: zero}
}

func plainUnit(prefix, suffix string) unitFormat {
	return unitFormat{factor: 1, steps: []scale{{1, prefix, suffix}}}
}

var unitFormats = map[string]unitFormat{
	"short":       {factor: 1, steps: ladder(thousands, "", "", " K", " Mil", " Bil", " Tri", " Quadr")},
	"none":        plainUnit("", ""),
	"percent":     plainUnit("", "%"),
	"percentunit": {factor: 100, steps: []scale{{1, "", "%"}}},
	"reqps":       countUnit("req/s"),
	"rps":         countUnit("rd/s"),
	"wps":         countUnit("wr/s"),
	"ops":         countUnit("ops/s"),
	"iops":        countUnit("io/s"),
	"cps":         countUnit("c/s"),
	"reqpm":       countUnit("req/m"),
	"opm":         countUnit("ops/m"),
	"cpm":         countUnit("c/m"),
	"ns":          timeUnit(1e-9, 0),
	"µs":          timeUnit(1e-6, 1),
	"us":          timeUnit(1e-6, 1),
	"ms":          timeUnit(1e-3, 2),
	"s":           timeUnit(1, 3),
	"m":           timeUnit(60, 4),
	"h":           timeUnit(3600, 5),
	"d":           timeUnit(86400, 6),
	"bytes":       {factor: 1, steps: ladder(kibis, "", " B", " KiB", " MiB", " GiB", " TiB", " PiB")},
	"decbytes":    {factor: 1, steps: ladder(thousands, "", " B", " kB", " MB", " GB", " TB", " PB")},
	"Bps":         {factor: 1, steps: ladder(kibis, "", " B/s", " KiB/s", " MiB/s", " GiB/s", " TiB/s", " PiB/s")},
	"binBps":      {factor: 1, steps: ladder(kibis, "", " B/s", " KiB/s", " MiB/s", " GiB/s", " TiB/s", " PiB/s")},
	"decBps":      {factor: 1, steps: ladder(thousands, "", " B/s", " kB/s", " MB/s", " GB/s", " TB/s", " PB/s")},
	"bps":         {factor: 1, steps: ladder(thousands, "", " b/s", " kb/s", " Mb/s", " Gb/s", " Tb/s", " Pb/s")},
	"currencyUSD": currencyUnit("$"),
	"currencyEUR": currencyUnit("€"),
	"currencyGBP": currencyUnit("£"),
}

// lookupUnit returns the format of a Grafana unit id. No unit is "short";
// "prefix:X" and "suffix:X" are Grafana's custom units; any other unknown
// id is shown after the number, as Grafana does.
func lookupUnit(unit string) unitFormat {
	if unit == "" {
		unit = "short"
	}
	if f, ok := unitFormats[unit]; ok {
		return f
	}
	if s, ok := strings.CutPrefix(unit, "suffix:"); ok {
		return plainUnit("", s)
	}
	if p, ok := strings.CutPrefix(unit, "prefix:"); ok {
		return plainUnit(p, "")
	}
	return plainUnit("", " "+unit)
}

// pick returns the step for a value already in the ladder's base.
func (f unitFormat) pick(base float64) scale {
	a := math.Abs(base)
	if a == 0 {
		return f.steps[f.zero]
	}
	s := f.steps[0]
	for _, st := range f.steps {
		if a >= st.div*(1-1e-9) {
			s = st
		}
	}
	return s
}

func (s scale) format(base float64, decimals int, trim bool) string {
	x := base / s.div
	sign := ""
	if x < 0 {
		sign, x = "-", -x
	}
	num := strconv.FormatFloat(x, 'f', decimals, 64)
	if trim && strings.Contains(num, ".") {
		num = strings.TrimRight(strings.TrimRight(num, "0"), ".")
	}
	if strings.Trim(num, "0.") == "" {
		sign = ""
	}
	return sign + s.prefix + num + s.suffix
}

func formatSpecial(v float64) (string, bool) {
	switch {
	case math.IsNaN(v):
		return "NaN", true
	case math.IsInf(v, 1):
		return "+Inf", true
	case math.IsInf(v, -1):
		return "-Inf", true
	}
	return "", false
}

// FormatValue shows one value in a Grafana unit, scaled to a readable
// step (0.0042 s is "4.2 ms"). decimals < 0 picks about three significant
// digits and drops trailing zeros.
func FormatValue(unit string, v float64, decimals int) string {
	if s, ok := formatSpecial(v); ok {
		return s
	}
	f := lookupUnit(unit)
	base := v * f.factor
	s := f.pick(base)
	if decimals < 0 {
		x := math.Abs(base / s.div)
		decimals = 0
		if x > 0 {
			decimals = min(max(0, 2-int(math.Floor(math.Log10(x)))), 6)
		}
		return s.format(base, decimals, true)
	}
	return s.format(base, decimals, false)
}

// FormatTicks labels axis ticks spaced step apart: each tick is scaled on
// its own (500 ms, 1.0 s, 1.5 s) with as many decimals as the step needs
// at that scale; a zero tick is a plain 0 at the scale of the largest tick.
func FormatTicks(unit string, ticks []float64, step float64) []string {
	f := lookupUnit(unit)
	var largest float64
	for _, t := range ticks {
		largest = max(largest, math.Abs(t*f.factor))
	}
	out := make([]string, len(ticks))
	for i, t := range ticks {
		if s, ok := formatSpecial(t); ok {
			out[i] = s
			continue
		}
		base := t * f.factor
		s := f.pick(base)
		if base == 0 {
			out[i] = f.pick(largest).format(0, 0, false)
			continue
		}
		out[i] = s.format(base, decimalsFor(math.Abs(step*f.factor)/s.div), false)
	}
	return out
}

// decimalsFor is how many decimals show multiples of x exactly (up to 4).
func decimalsFor(x float64) int {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	for d := 0; d < 4; d++ {
		y := x * math.Pow10(d)
		if math.Abs(y-math.Round(y)) <= 1e-6*math.Max(1, y) {
			return d
		}
	}
	return 4
}

// NiceStep is the tick spacing for about n ticks over span, a 1, 2, 2.5 or
// 5 times a power of ten in the unit's step for the largest value (so
// bytes tick in KiB or MiB, durations in ms, s or min).
func NiceStep(unit string, span, largest float64, n int) float64 {
	if n < 1 {
		n = 1
	}
	if span <= 0 || math.IsNaN(span) || math.IsInf(span, 0) {
		return 1
	}
	f := lookupUnit(unit)
	div := f.pick(largest*f.factor).div / f.factor
	raw := span / float64(n) / div
	exp := math.Floor(math.Log10(raw))
	frac := raw / math.Pow10(int(exp))
	var nice float64
	switch {
	case frac <= 1:
		nice = 1
	case frac <= 2:
		nice = 2
	case frac <= 2.5:
		nice = 2.5
	case frac <= 5:
		nice = 5
	default:
		nice = 10
	}
	return nice * math.Pow10(int(exp)) * div
}
