package templates

import (
	"regexp"
	"slices"
	"testing"
)

// markerRE is the markers' definition as a regular expression: the
// hand-written scanner (3× faster in Render) must find exactly its matches.
var markerRE = regexp.MustCompile(`\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}`)

func scanned(text string) []int {
	var got []int
	markers(text, func(start, end int, _ string) { got = append(got, start, end) })
	return got
}

func expected(text string) []int {
	var want []int
	for _, m := range markerRE.FindAllStringIndex(text, -1) {
		want = append(want, m...)
	}
	return want
}

func FuzzMarkersMatchTheRegexp(f *testing.F) {
	for _, s := range []string{"{{a}}", "{{{a}}}", "{{ a }}{{b}}", "{{1a}}", "{{a b}}", "{{_}}{{", "}}{{x\n}}", "{{é}}", "{{a}", "{ {a}}", "{{\va\f}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if got, want := scanned(text), expected(text); !slices.Equal(got, want) {
			t.Errorf("%q: scanner %v, regexp %v", text, got, want)
		}
	})
}
