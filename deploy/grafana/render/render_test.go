package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseDashboardLayout(t *testing.T) {
	// A collapsed row keeps its panels inside it (at the y they had when it
	// was expanded) and what follows was laid out without them.
	const js = `{
	  "title": "T",
	  "panels": [
	    {"type": "row", "title": "Open", "collapsed": false, "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}, "panels": []},
	    {"type": "timeseries", "title": "B", "gridPos": {"x": 12, "y": 1, "w": 12, "h": 8}},
	    {"type": "timeseries", "title": "A", "gridPos": {"x": 0, "y": 1, "w": 12, "h": 8}},
	    {"type": "row", "title": "Closed", "collapsed": true, "gridPos": {"x": 0, "y": 9, "w": 24, "h": 1}, "panels": [
	      {"type": "stat", "title": "C", "gridPos": {"x": 0, "y": 30, "w": 6, "h": 4}},
	      {"type": "timeseries", "title": "D", "gridPos": {"x": 0, "y": 34, "w": 24, "h": 6}}
	    ]},
	    {"type": "row", "title": "After", "collapsed": false, "gridPos": {"x": 0, "y": 10, "w": 24, "h": 1}, "panels": []},
	    {"type": "timeseries", "title": "E", "gridPos": {"x": 0, "y": 11, "w": 24}}
	  ]
	}`
	d, err := ParseDashboard([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range d.Layout() {
		g := p.GridPos
		got = append(got, p.Title+":"+itoa(g.X)+","+itoa(g.Y)+","+itoa(g.W)+","+itoa(g.H))
	}
	want := []string{
		"Open:0,0,24,1", "A:0,1,12,8", "B:12,1,12,8",
		"Closed:0,9,24,1", "C:0,10,6,4", "D:0,14,24,6",
		"After:0,20,24,1", "E:0,21,24,8",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("layout\n got %v\nwant %v", got, want)
	}

	// The HTTP API's envelope is accepted too.
	d2, err := ParseDashboard([]byte(`{"dashboard": ` + js + `, "meta": {}}`))
	if err != nil || len(d2.Layout()) != 8 {
		t.Errorf("enveloped dashboard: %v, %d panels", err, len(d2.Layout()))
	}
	if _, err := ParseDashboard([]byte(`{"title": "empty"}`)); err == nil {
		t.Error("a dashboard without panels was accepted")
	}
	if _, err := ParseDashboard([]byte(`{`)); err == nil {
		t.Error("broken JSON was accepted")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPanelQueries(t *testing.T) {
	p := Panel{
		Datasource: json.RawMessage(`{"type": "prometheus", "uid": "${datasource}"}`),
		Targets: []Target{
			{RefID: "A", Expr: "up"},
			{RefID: "B", Expr: "up", Hide: true},
			{RefID: "C", Expr: "  "},
			{RefID: "D", Expr: "$A + 1", Datasource: json.RawMessage(`{"type": "__expr__", "uid": "__expr__"}`)},
			{RefID: "E", Expr: "up", Datasource: json.RawMessage(`"Prometheus"`)},
		},
	}
	var ids []string
	for _, q := range p.Queries() {
		ids = append(ids, q.RefID)
	}
	if got := strings.Join(ids, ","); got != "A,E" {
		t.Errorf("queries run: %s, want A,E", got)
	}
}

func TestSubstitute(t *testing.T) {
	d := &Dashboard{}
	d.Templating.List = []Variable{
		{Name: "datasource", Type: "datasource"},
		{Name: "app", Type: "query", Current: struct {
			Value json.RawMessage `json:"value"`
		}{json.RawMessage(`"$__all"`)}},
		{Name: "env", Type: "custom", Current: struct {
			Value json.RawMessage `json:"value"`
		}{json.RawMessage(`["prod","staging"]`)}},
		{Name: "team", Type: "constant", Query: json.RawMessage(`"core"`)},
	}
	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	vars := QueryVars(d, map[string]string{"instance": "gw-1"}, start, start.Add(90*time.Minute), 5*time.Second, "1m")
	cases := []struct{ in, want string }{
		{`rate(x{app=~"$app"}[$__rate_interval])`, `rate(x{app=~".*"}[1m])`},
		{`rate(x{app=~"${app}"}[${__rate_interval}])`, `rate(x{app=~".*"}[1m])`},
		{`increase(x[$__range])`, `increase(x[90m])`},
		{`avg_over_time(x[$__interval])`, `avg_over_time(x[5s])`},
		{`x{env=~"$env", team="$team", i="[[instance]]", j="${instance:raw}"}`, `x{env=~"(prod|staging)", team="core", i="gw-1", j="gw-1"}`},
		{`x / $__range_s`, `x / 5400`},
		{`x{a="$unknown"}`, `x{a="$unknown"}`},
	}
	for _, c := range cases {
		if got := Substitute(c.in, vars); got != c.want {
			t.Errorf("Substitute(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// The command line wins over the dashboard's defaults.
	vars = QueryVars(d, map[string]string{"app": "sas-gateway"}, start, start.Add(time.Hour), time.Second, "4s")
	if got := Substitute(`x{job="$app"}[$__rate_interval]`, vars); got != `x{job="sas-gateway"}[4s]` {
		t.Errorf("given app: %q", got)
	}
	// $app is .* even when the dashboard does not declare it.
	vars = QueryVars(&Dashboard{}, nil, start, start.Add(time.Hour), time.Second, "1m")
	if vars["app"] != ".*" {
		t.Errorf("$app defaults to %q", vars["app"])
	}
}

func TestPromDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "90m", 90 * time.Second: "90s", 5 * time.Second: "5s",
		1500 * time.Millisecond: "1500ms", 48 * time.Hour: "2d", 14 * 24 * time.Hour: "2w", 0: "0s",
	} {
		if got := PromDuration(d); got != want {
			t.Errorf("PromDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2024-05-01T11:00:00Z":      now.Add(-time.Hour),
		"2024-05-01T13:00:00+02:00": now.Add(-time.Hour),
		"1714564800":                now,
		"1714564800.5":              now.Add(500 * time.Millisecond),
		"now":                       now,
		"now-15m":                   now.Add(-15 * time.Minute),
	} {
		got, err := ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "now-5", "NaN"} {
		if _, err := ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

func TestLegendName(t *testing.T) {
	labels := map[string]string{"__name__": "sas_http_requests_total", "route": "/v1/me", "code": "200"}
	rate := map[string]string{"route": "/v1/me"}
	cases := []struct {
		format string
		labels map[string]string
		want   string
	}{
		{"{{route}}", labels, "/v1/me"},
		{"{{ route }} {{code}}", labels, "/v1/me 200"},
		{"{{route}} ({{missing}})", labels, "/v1/me ()"},
		{"p99", labels, "p99"},
		{"", rate, `{route="/v1/me"}`},
		{"", labels, `sas_http_requests_total{code="200", route="/v1/me"}`},
		{"__auto", rate, `{route="/v1/me"}`},
		{"", map[string]string{}, "sum(rate(x[1m]))"},
		{"", map[string]string{"__name__": "up"}, "up"},
		{"", map[string]string{"q": `a"b`}, `{q="a\"b"}`},
	}
	for _, c := range cases {
		if got := LegendName(c.format, c.labels, "sum(rate(x[1m]))"); got != c.want {
			t.Errorf("LegendName(%q, %v) = %q, want %q", c.format, c.labels, got, c.want)
		}
	}
}

func TestFormatValue(t *testing.T) {
	cases := []struct {
		unit string
		v    float64
		want string
	}{
		{"reqps", 12.34, "12.3 req/s"},
		{"reqps", 1500, "1.5K req/s"},
		{"ops", 3, "3 ops/s"},
		{"s", 0.0042, "4.2 ms"},
		{"s", 0.25, "250 ms"},
		{"s", 1.5, "1.5 s"},
		{"s", 90, "1.5 min"},
		{"s", 0.0000031, "3.1 µs"},
		{"s", 0, "0 s"},
		{"ms", 250, "250 ms"},
		{"ms", 2500, "2.5 s"},
		{"currencyUSD", 1.234, "$1.23"},
		{"currencyUSD", 12345, "$12.3K"},
		{"currencyUSD", -2.5, "-$2.5"},
		{"short", 1234567, "1.23 Mil"},
		{"", 42, "42"},
		{"bytes", 512, "512 B"},
		{"bytes", 1536, "1.5 KiB"},
		{"bytes", 3 << 20, "3 MiB"},
		{"decbytes", 1500, "1.5 kB"},
		{"percentunit", 0.256, "25.6%"},
		{"percent", 25.6, "25.6%"},
		{"none", 1234567, "1234567"},
		{"none", 0.00123, "0.00123"},
		{"widgets", 3, "3 widgets"},
		{"suffix:rps", 3, "3rps"},
		{"s", math.NaN(), "NaN"},
		{"s", math.Inf(1), "+Inf"},
	}
	for _, c := range cases {
		if got := FormatValue(c.unit, c.v, -1); got != c.want {
			t.Errorf("FormatValue(%q, %v) = %q, want %q", c.unit, c.v, got, c.want)
		}
	}
	if got := FormatValue("s", 0.5, 2); got != "500.00 ms" {
		t.Errorf("fixed decimals: %q", got)
	}
}

func TestAxisTicks(t *testing.T) {
	cases := []struct {
		unit   string
		lo, hi float64
		want   string
	}{
		{"s", 0, 1.4, "0 s|500 ms|1.0 s|1.5 s"},
		{"s", 0.001, 0.0042, "0 ms|2 ms|4 ms|6 ms"},
		{"reqps", 0, 7, "0 req/s|2 req/s|4 req/s|6 req/s|8 req/s"},
		{"reqps", 0, 9, "0 req/s|2.5 req/s|5.0 req/s|7.5 req/s|10.0 req/s"},
		{"percentunit", 0, 0.9, "0%|25%|50%|75%|100%"},
		{"bytes", 0, 3 << 20, "0 MiB|1 MiB|2 MiB|3 MiB"},
		{"currencyUSD", 0, 0.03, "$0|$0.01|$0.02|$0.03"},
		{"short", 0, 0, "0|0.25|0.50|0.75|1.00"},
		{"short", -3, 4, "-4|-2|0|2|4"},
	}
	for _, c := range cases {
		_, _, ticks := YAxis(c.unit, c.lo, c.hi, nil, nil, 4)
		var labels []string
		for _, tk := range ticks {
			labels = append(labels, tk.Label)
		}
		if got := strings.Join(labels, "|"); got != c.want {
			t.Errorf("YAxis(%q, %v, %v) ticks %s, want %s", c.unit, c.lo, c.hi, got, c.want)
		}
	}
	// A panel's min and max are kept as set.
	lo, hi := 10.0, 20.0
	gotLo, gotHi, _ := YAxis("short", 12, 13, &lo, &hi, 4)
	if gotLo != 10 || gotHi != 20 {
		t.Errorf("YAxis with min/max: %v..%v", gotLo, gotHi)
	}
}

func TestTimeTicks(t *testing.T) {
	start := float64(time.Date(2024, 5, 1, 12, 0, 10, 0, time.UTC).Unix())
	ticks := TimeTicks(start, start+30*60, 7, time.UTC)
	var labels []string
	for _, tk := range ticks {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, " "); got != "12:05 12:10 12:15 12:20 12:25 12:30" {
		t.Errorf("30 min ticks: %s", got)
	}
	ticks = TimeTicks(start, start+30, 4, time.UTC)
	if ticks[0].Label != "12:00:10" || len(ticks) != 4 {
		t.Errorf("30 s ticks: %d from %q", len(ticks), ticks[0].Label)
	}
}

func TestSegmentsAndCap(t *testing.T) {
	ps := []Point{{0, 1}, {5, 2}, {10, math.NaN()}, {15, 3}, {20, 4}, {40, 5}, {45, math.Inf(1)}}
	segs := Segments(ps, 5)
	var lens []int
	for _, s := range segs {
		lens = append(lens, len(s))
	}
	if len(lens) != 3 || lens[0] != 2 || lens[1] != 2 || lens[2] != 1 {
		t.Errorf("segments %v, want [2 2 1]", lens)
	}

	var all []NamedSeries
	for i := range 10 {
		all = append(all, NamedSeries{Name: itoa(i), Series: Series{Points: []Point{{0, float64(i % 5)}}}})
	}
	kept := capSeries(all, 4)
	var names []string
	for _, s := range kept {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "3,4,8,9" {
		t.Errorf("kept %s, want the four largest in order: 3,4,8,9", got)
	}
}

func TestReportLine(t *testing.T) {
	p := PanelData{Panel: Panel{Title: "Spend", Type: "timeseries"}, Total: 10, HasData: true,
		Series: make([]NamedSeries, 8)}
	if got, want := p.ReportLine(), `panel "Spend" (timeseries): 10 series, data (8 drawn, 2 not drawn)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	p = PanelData{Panel: Panel{Title: "Notes", Type: "text"}, Skipped: `panel type "text" is not drawn`}
	if got, want := p.ReportLine(), `panel "Notes" (text): 0 series, no data (panel type "text" is not drawn)`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDecodeMatrix(t *testing.T) {
	series, err := decodeMatrix(json.RawMessage(`{"resultType":"matrix","result":[
	  {"metric":{"route":"/v1/me"},"values":[[1714564800,"1.5"],[1714564805.5,"NaN"],[1714564810,"+Inf"],[1714564815,"-Inf"]]},
	  {"metric":{},"values":[]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 2 || series[0].Labels["route"] != "/v1/me" || len(series[0].Points) != 4 {
		t.Fatalf("decoded %+v", series)
	}
	p := series[0].Points
	if p[0] != (Point{1714564800, 1.5}) || p[1].T != 1714564805.5 || !math.IsNaN(p[1].V) || !math.IsInf(p[2].V, 1) || !math.IsInf(p[3].V, -1) {
		t.Errorf("points %v", p)
	}
	if _, err := decodeMatrix(json.RawMessage(`{"resultType":"vector","result":[]}`)); err == nil {
		t.Error("a vector was accepted as a matrix")
	}
}

// TestDraw draws a page with every kind of panel without Prometheus and
// checks its size.
func TestDraw(t *testing.T) {
	start := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	var pts []Point
	for i := range 60 {
		pts = append(pts, Point{float64(start.Unix() + int64(i*5)), float64(i % 7)})
	}
	panels := []PanelData{
		{Panel: Panel{Type: "row", Title: "Row", GridPos: GridPos{0, 0, 24, 1}}},
		{Panel: Panel{Type: "timeseries", Title: "Lines", GridPos: GridPos{0, 1, 12, 8}}, Total: 1, HasData: true,
			Series: []NamedSeries{{Name: "a", Series: Series{Points: pts}}}},
		{Panel: Panel{Type: "stat", Title: "Stat", GridPos: GridPos{12, 1, 6, 8}}, Total: 1, HasData: true,
			Series: []NamedSeries{{Name: "a", Series: Series{Points: pts}}}},
		{Panel: Panel{Type: "timeseries", Title: "Empty", GridPos: GridPos{18, 1, 6, 8}}},
		{Panel: Panel{Type: "text", Title: "Text", GridPos: GridPos{0, 9, 24, 3}}, Skipped: "not drawn"},
	}
	opts := Options{Start: start, End: start.Add(5 * time.Minute), Step: 5 * time.Second, Width: 1000}
	var buf bytes.Buffer
	if err := Draw(&buf, "Title", panels, opts); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	w, h, _ := PageSize(panels, 1000, 0)
	if img.Bounds().Dx() != 1000 || img.Bounds().Dy() != h || w != 1000 {
		t.Errorf("size %v, want 1000×%d", img.Bounds().Size(), h)
	}
}

func TestPanelUnit(t *testing.T) {
	d, err := ParseDashboard([]byte(`{"panels": [
	  {"type": "timeseries", "fieldConfig": {"defaults": {"unit": "reqps"}}},
	  {"type": "graph", "yaxes": [{"format": "bytes"}, {"format": "short"}]},
	  {"type": "timeseries"}
	]}`))
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, p := range d.Panels {
		units = append(units, p.Unit())
	}
	if got := strings.Join(units, ","); got != "reqps,bytes," {
		t.Errorf("units %s", got)
	}
}

func TestParseArgs(t *testing.T) {
	var stderr bytes.Buffer
	opts, err := ParseArgs([]string{"-dashboard", "d.json", "-start", "2024-05-01T12:00:00Z", "-end", "1714568400",
		"-step", "5s", "-vars", "app=sas-.*", "-vars", "$env=prod", "-width", "1600"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Vars["app"] != "sas-.*" || opts.Vars["env"] != "prod" || opts.Width != 1600 || opts.Step != 5*time.Second ||
		opts.End.Sub(opts.Start) != time.Hour || opts.RateInterval != "1m" || opts.MaxSeries != 8 {
		t.Errorf("options %+v", opts)
	}
	for _, bad := range [][]string{
		{},
		{"-dashboard", "d.json", "-start", "yesterday"},
		{"-dashboard", "d.json", "-vars", "novalue"},
		{"-dashboard", "d.json", "-step", "0s"},
		{"-dashboard", "d.json", "extra"},
	} {
		if _, err := ParseArgs(bad, &stderr); err == nil {
			t.Errorf("ParseArgs(%q) accepted", bad)
		}
	}
}

func TestRunRefusesTooManyPoints(t *testing.T) {
	dash := t.TempDir() + "/d.json"
	if err := os.WriteFile(dash, []byte(`{"panels": [{"type": "timeseries", "title": "x"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	err := Run(context.Background(), Options{Dashboard: dash, Prometheus: "http://127.0.0.1:1",
		Start: start, End: start.Add(24 * time.Hour), Step: time.Second}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "use a larger -step") {
		t.Errorf("err = %v", err)
	}
}

// TestErrorsHideThePassword (found in review): a Prometheus URL carrying
// credentials — the only way to give this tool any — never reaches an
// error in full, whether Prometheus cannot be reached or answers
// something that is not its API.
func TestErrorsHideThePassword(t *testing.T) {
	notProm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "<html>a login page</html>")
	}))
	defer notProm.Close()
	for _, base := range []string{
		"http://grafana:s3cret-pw@127.0.0.1:1",
		strings.Replace(notProm.URL, "http://", "http://grafana:s3cret-pw@", 1),
		"http://grafana:s3cret-pw@[::1",
	} {
		err := (&PromClient{Base: base}).Ping(context.Background())
		if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("Ping(%s): %v", base, err)
		}
	}
}
