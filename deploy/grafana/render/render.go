package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Options are one rendering's inputs.
type Options struct {
	Dashboard    string // path of the dashboard JSON
	Prometheus   string // base URL
	Start, End   time.Time
	Step         time.Duration
	RateInterval string            // what $__rate_interval becomes
	Vars         map[string]string // dashboard variables given on the command line
	Out          string            // PNG path
	Width        int               // PNG width in pixels
	UnitHeight   float64           // pixels per grid height unit; 0: 30 at 1920 wide, scaled
	MaxSeries    int               // series drawn per panel at most
	Location     *time.Location    // time zone of the x axis and title
	Timeout      time.Duration     // per Prometheus request
}

// maxPoints is Prometheus's limit of points per series of a range query.
const maxPoints = 11000

// PanelData is a panel with the results of its queries.
type PanelData struct {
	Panel   Panel
	Unit    string
	Series  []NamedSeries // drawn, at most MaxSeries
	Total   int           // series returned by all its queries
	HasData bool          // some series has a finite sample
	Skipped string        // why the panel's type is not drawn, if it is not
}

// NamedSeries is a series with its legend name.
type NamedSeries struct {
	Name string
	Series
}

// Dropped is how many returned series are not drawn.
func (p PanelData) Dropped() int { return p.Total - len(p.Series) }

// ReportLine is the one line printed for a panel.
func (p PanelData) ReportLine() string {
	data := "no data"
	if p.HasData {
		data = "data"
	}
	line := fmt.Sprintf("panel %q (%s): %d series, %s", p.Panel.Title, p.Panel.Type, p.Total, data)
	if d := p.Dropped(); d > 0 {
		line += fmt.Sprintf(" (%d drawn, %d not drawn)", len(p.Series), d)
	}
	if p.Skipped != "" {
		line += " (" + p.Skipped + ")"
	}
	return line
}

// drawnTypes are the panel types drawn as graphs or values; other types
// get a placeholder, their queries are still run (and so checked).
var drawnTypes = map[string]bool{"timeseries": true, "graph": true, "stat": true, "gauge": true, "bargauge": true}

// PanelQueryError names the panel and the query Prometheus refused.
type PanelQueryError struct {
	Panel string
	RefID string
	Query string
	Err   error
}

func (e *PanelQueryError) Error() string {
	return fmt.Sprintf("panel %q, query %s: %s\n  query: %s", e.Panel, e.RefID, e.Err, e.Query)
}

func (e *PanelQueryError) Unwrap() error { return e.Err }

// Fetch runs every query of every panel of d. It stops at the first error.
func Fetch(ctx context.Context, client *PromClient, d *Dashboard, opts Options) ([]PanelData, []string, error) {
	vars := QueryVars(d, opts.Vars, opts.Start, opts.End, opts.Step, opts.RateInterval)
	var out []PanelData
	var warnings []string
	for _, p := range d.Layout() {
		pd := PanelData{Panel: p, Unit: p.Unit()}
		if p.IsRow() {
			out = append(out, pd)
			continue
		}
		if !drawnTypes[p.Type] {
			pd.Skipped = fmt.Sprintf("panel type %q is not drawn", p.Type)
		}
		var all []NamedSeries
		for _, t := range p.Queries() {
			q := Substitute(t.Expr, vars)
			series, warns, err := client.QueryRange(ctx, q, opts.Start, opts.End, opts.Step)
			if err != nil {
				if _, ok := err.(*UnreachableError); ok {
					return nil, nil, err
				}
				return nil, nil, &PanelQueryError{Panel: p.Title, RefID: t.RefID, Query: q, Err: err}
			}
			for _, w := range warns {
				warnings = append(warnings, fmt.Sprintf("panel %q, query %s: %s", p.Title, t.RefID, w))
			}
			for _, s := range series {
				all = append(all, NamedSeries{Name: LegendName(t.LegendFormat, s.Labels, q), Series: s})
			}
		}
		pd.Total = len(all)
		for _, s := range all {
			if hasFinite(s.Points) {
				pd.HasData = true
				break
			}
		}
		pd.Series = capSeries(all, opts.MaxSeries)
		out = append(out, pd)
	}
	return out, warnings, nil
}

func hasFinite(ps []Point) bool {
	for _, p := range ps {
		if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) {
			return true
		}
	}
	return false
}

// capSeries keeps the n series with the largest mean absolute value (the
// ones that matter on a shared axis), in their original order.
func capSeries(all []NamedSeries, n int) []NamedSeries {
	if n <= 0 || len(all) <= n {
		return all
	}
	type ranked struct {
		i    int
		mean float64
	}
	rs := make([]ranked, len(all))
	for i, s := range all {
		var sum float64
		var k int
		for _, p := range s.Points {
			if !math.IsNaN(p.V) && !math.IsInf(p.V, 0) {
				sum += math.Abs(p.V)
				k++
			}
		}
		m := math.Inf(-1)
		if k > 0 {
			m = sum / float64(k)
		}
		rs[i] = ranked{i, m}
	}
	sort.SliceStable(rs, func(a, b int) bool { return rs[a].mean > rs[b].mean })
	keep := make([]bool, len(all))
	for _, r := range rs[:n] {
		keep[r.i] = true
	}
	out := make([]NamedSeries, 0, n)
	for i, s := range all {
		if keep[i] {
			out = append(out, s)
		}
	}
	return out
}

// Run renders the dashboard to opts.Out and prints one line per panel to
// stdout (warnings go to stderr).
func Run(ctx context.Context, opts Options, stdout, stderr io.Writer) error {
	raw, err := os.ReadFile(opts.Dashboard)
	if err != nil {
		return err
	}
	d, err := ParseDashboard(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", opts.Dashboard, err)
	}
	if !opts.End.After(opts.Start) {
		return fmt.Errorf("the end (%s) is not after the start (%s)", opts.End.Format(time.RFC3339), opts.Start.Format(time.RFC3339))
	}
	if opts.Step <= 0 {
		return fmt.Errorf("the step must be positive, not %s", opts.Step)
	}
	if n := opts.End.Sub(opts.Start) / opts.Step; n > maxPoints {
		return fmt.Errorf("%s at a step of %s is %d points per series, Prometheus answers %d at most: use a larger -step",
			opts.End.Sub(opts.Start), opts.Step, n, maxPoints)
	}
	client := &PromClient{Base: opts.Prometheus, HTTP: &http.Client{Timeout: opts.Timeout}}
	if err := client.Ping(ctx); err != nil {
		return err
	}
	panels, warnings, err := Fetch(ctx, client, d, opts)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	var png bytes.Buffer
	if err := Draw(&png, d.Title, panels, opts); err != nil {
		return err
	}
	if err := writeFileAtomic(opts.Out, png.Bytes()); err != nil {
		return err
	}
	w, h, _ := PageSize(panels, opts.Width, opts.UnitHeight)
	fmt.Fprintf(stderr, "wrote %s (%d×%d)\n", opts.Out, w, h)
	for _, p := range panels {
		if !p.Panel.IsRow() {
			fmt.Fprintln(stdout, p.ReportLine())
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".render-*.png")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
