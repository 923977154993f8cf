// Package prometheus tests the gateway's alert rules (alerts.yml): promtool
// checks them and runs their unit tests (alerts_test.yml), and the rules
// are held to the runbook in docs/operations.md, to their unit tests and to
// the metrics the gateway declares, so that a renamed metric, a renamed
// heading or an untested alert fails here rather than in production.
package prometheus

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v4"
)

const (
	rulesFile   = "alerts.yml"
	testsFile   = "alerts_test.yml"
	runbookFile = "../../docs/operations.md"
	metricsDir  = "../../gateway/metrics"
	runbookURL  = "https://github.com/signals-sorcery/sas/blob/main/docs/operations.md#"
)

// rule is an entry of a rule group (Prometheus' rule file format).
type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// alertTest is an alert_rule_test of promtool's unit test format.
type alertTest struct {
	Alertname string           `yaml:"alertname"`
	ExpAlerts []map[string]any `yaml:"exp_alerts"`
}

// TestPromtool checks the rules (syntax, PromQL, templates) and runs their
// unit tests.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not installed (scripts/test installs it: Debian package prometheus): %v", err)
	}
	for _, args := range [][]string{
		{"check", "rules", rulesFile},
		{"test", "rules", testsFile},
	} {
		t.Run(strings.Join(args[:2], "_"), func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command(promtool, args...).CombinedOutput()
			if err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// TestAlertsHaveRunbooks checks that every rule is an alert with a
// severity, a summary, a description and a runbook_url whose anchor is a
// heading of docs/operations.md.
func TestAlertsHaveRunbooks(t *testing.T) {
	anchors := headingAnchors(t, runbookFile)
	seen, missing := map[string]bool{}, false
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			t.Errorf("rule %q (record %q) is not an alert: the file holds alerts only", r.Expr, r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("%s: two alerts of that name", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "page" && s != "ticket" {
			t.Errorf("%s: severity label %q, want page or ticket", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		u := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, runbookURL)
		switch {
		case u == "":
		case !ok:
			t.Errorf("%s: runbook_url %q is not a section of %s", r.Alert, u, runbookURL)
		case !anchors[anchor]:
			t.Errorf("%s: runbook_url's anchor #%s is no heading of %s", r.Alert, anchor, runbookFile)
			missing = true
		}
	}
	if missing {
		t.Logf("the anchors of %s's headings: %v", runbookFile, slices.Sorted(maps.Keys(anchors)))
	}
}

// TestAlertsAreUnitTested checks that alerts_test.yml has, for every alert,
// a case where it fires and one where it stays silent, and no case for an
// alert that does not exist (promtool passes those: an unknown alert never
// fires).
func TestAlertsAreUnitTested(t *testing.T) {
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTests []alertTest `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	loadYAML(t, testsFile, &tests)
	if !slices.Equal(tests.RuleFiles, []string{rulesFile}) {
		t.Errorf("%s: rule_files %q, want [%s]", testsFile, tests.RuleFiles, rulesFile)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTests {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		alerts[r.Alert] = true
		if !fires[r.Alert] {
			t.Errorf("%s: no case in %s where it fires (an alert_rule_test with exp_alerts)", r.Alert, testsFile)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no case in %s where it stays silent (an alert_rule_test with exp_alerts: [])", r.Alert, testsFile)
		}
	}
	for name := range fires {
		if !alerts[name] {
			t.Errorf("%s tests alert %s, which %s does not have", testsFile, name, rulesFile)
		}
	}
	for name := range silent {
		if !alerts[name] {
			t.Errorf("%s tests alert %s, which %s does not have (it would pass: an unknown alert never fires)", testsFile, name, rulesFile)
		}
	}
}

var (
	metricName = regexp.MustCompile(`\bsas_[a-zA-Z0-9_:]+`)
	// aggregation matches PromQL's aggregation operators and, when written
	// before the argument, their by clause.
	aggregation = regexp.MustCompile(`\b(sum|min|max|avg|group|stddev|stdvar|count|count_values|bottomk|topk|quantile)\s*(by\s*\(([^)]*)\)|without\s*\([^)]*\))?\s*\(`)
)

// TestAlertsUseDeclaredMetrics checks that every sas_ metric an alert reads
// is declared in gateway/metrics (a renamed metric would leave an alert
// that never fires), and that every aggregation keeps the app label, so
// that on Fly.io prod and dev alert apart.
func TestAlertsUseDeclaredMetrics(t *testing.T) {
	declared := declaredMetrics(t, metricsDir)
	for _, r := range loadRules(t) {
		for _, name := range slices.Compact(slices.Sorted(slices.Values(metricName.FindAllString(r.Expr, -1)))) {
			if !declared.has(name) {
				t.Errorf("%s: metric %s is not declared in %s", r.Alert, name, metricsDir)
			}
		}
		aggs := aggregation.FindAllStringSubmatch(r.Expr, -1)
		if len(aggs) == 0 {
			t.Errorf("%s: expr aggregates nothing; want by (app, …), so that apps and instances are grouped", r.Alert)
		}
		for _, m := range aggs {
			if !slices.Contains(splitLabels(m[3]), "app") {
				t.Errorf("%s: %q does not keep the app label: write %s by (app, …) (…)", r.Alert, strings.TrimSpace(m[0]), m[1])
			}
		}
	}
}

func splitLabels(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, ",") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	loadYAML(t, rulesFile, &f)
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return rules
}

func loadYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// headingAnchors returns the anchors GitHub gives the Markdown headings of
// path: lower case, spaces to '-', other punctuation than '-' and '_'
// dropped, "-1", "-2"… appended to repeats. Lines in fenced code blocks
// are not headings.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors, count := map[string]bool{}, map[string]int{}
	fence := ""
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimLeft(line, " ")
		if f := fenceOf(trimmed); f != "" {
			switch {
			case fence == "":
				fence = f
			case strings.HasPrefix(f, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, f[:1])) == "":
				fence = ""
			}
			continue
		}
		if fence != "" || len(line)-len(trimmed) > 3 {
			continue
		}
		text, ok := strings.CutPrefix(strings.TrimLeft(trimmed, "#"), " ")
		if level := len(trimmed) - len(strings.TrimLeft(trimmed, "#")); !ok || level < 1 || level > 6 {
			continue
		}
		a := anchor(strings.TrimSpace(strings.TrimRight(strings.TrimSpace(text), "#")))
		if n := count[a]; n > 0 {
			anchors[a+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[a] = true
		}
		count[a]++
	}
	return anchors
}

// fenceOf returns the fence a line opens or closes (``` or ~~~, or longer),
// or "".
func fenceOf(line string) string {
	for _, c := range []string{"`", "~"} {
		if n := len(line) - len(strings.TrimLeft(line, c)); n >= 3 {
			return line[:n]
		}
	}
	return ""
}

func anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-', r == '_', unicode.IsLetter(r), unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// metrics maps the names of the metrics the gateway declares to their kind
// (Counter, Gauge, Histogram, Summary: the prometheus.…Opts they are
// declared with).
type metrics map[string]string

// has reports whether name is a declared metric, or one of the series a
// histogram or summary exposes.
func (m metrics) has(name string) bool {
	if m[name] != "" {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		kind := m[base]
		if ok && (kind == "Histogram" || kind == "Summary" && suffix != "_bucket") {
			return true
		}
	}
	return false
}

// declaredMetrics reads the Name of every prometheus.…Opts literal in the
// Go files of dir (its tests left out).
func declaredMetrics(t *testing.T, dir string) metrics {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "prometheus" {
				return true
			}
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if key, ok := kv.Key.(*ast.Ident); !ok || key.Name != "Name" {
					continue
				}
				if s, ok := kv.Value.(*ast.BasicLit); ok && s.Kind == token.STRING {
					if name, err := strconv.Unquote(s.Value); err == nil {
						m[name] = strings.TrimSuffix(sel.Sel.Name, "Opts")
					}
				}
			}
			return true
		})
	}
	if len(m) == 0 {
		t.Fatalf("no metric declared in %s: has it moved?", dir)
	}
	return m
}
