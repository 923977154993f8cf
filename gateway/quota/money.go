package quota

import (
	"errors"
	"strconv"
	"strings"
)

// Micros is an amount of US dollars in millionths (micro-dollars). Money is
// integer everywhere it is added up (Redis counters, the ledger), so sums
// are exact; JSON shows it as a decimal number of dollars.
type Micros int64

// MicrosPerUSD is one dollar.
const MicrosPerUSD Micros = 1_000_000

// String formats m as dollars with up to six decimals: 0.05, 3, 0.000198.
func (m Micros) String() string {
	neg := m < 0
	if neg {
		m = -m
	}
	s := strconv.FormatInt(int64(m/MicrosPerUSD), 10)
	if frac := int64(m % MicrosPerUSD); frac != 0 {
		s += "." + strings.TrimRight(strconv.FormatInt(1_000_000+frac, 10)[1:], "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}

// MarshalJSON writes m as a JSON number of dollars, exactly.
func (m Micros) MarshalJSON() ([]byte, error) { return []byte(m.String()), nil }

// ParseUSD parses a non-negative decimal amount of dollars ("0.15", "30").
// Amounts finer than a micro-dollar, negative or in exponent form are
// refused rather than rounded: a price or budget is what the operator wrote.
func ParseUSD(s string) (Micros, error) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") || len(frac) > 6 || strings.Trim(whole, "0123456789") != "" || strings.Trim(frac, "0123456789") != "" || (whole[0] == '0' && len(whole) > 1) {
		return 0, errors.New("must be a non-negative amount of dollars with at most 6 decimals, like 0.05")
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > 1_000_000_000 {
		return 0, errors.New("is too large")
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	return Micros(w)*MicrosPerUSD + Micros(f), nil
}
