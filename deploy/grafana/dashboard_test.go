package grafana_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/signals-sorcery/sas/deploy/grafana"
)

var update = flag.Bool("update", false, "rewrite sas-gateway.json from the panel table")

const dashboardFile = "sas-gateway.json"

// TestCommittedDashboard: the committed JSON is what the table generates.
func TestCommittedDashboard(t *testing.T) {
	want := grafana.Generate()
	if *update {
		if err := os.WriteFile(dashboardFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not what the panel table generates: run go test ./deploy/grafana -update", dashboardFile)
	}
}

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	Title         string `json:"title"`
	UID           any    `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource *datasource     `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource *datasource              `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID        string      `json:"refId"`
		Expr         string      `json:"expr"`
		LegendFormat string      `json:"legendFormat"`
		Datasource   *datasource `json:"datasource"`
	} `json:"targets"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Panels []panel `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	return d
}

// The units Grafana knows that the panels use; a typo would show raw
// numbers.
var grafanaUnits = map[string]bool{"reqps": true, "ops": true, "s": true, "currencyUSD": true, "short": true,
	"bytes": true, "percentunit": true, "none": true}

// TestDashboardShape: what Grafana's import needs and what makes it
// importable anywhere — a current schema version, no dashboard uid and no
// data source uid but the ${datasource} variable (Grafana makes a uid on
// import; data source uids differ per Grafana), unique panel ids, every
// panel on the 24-column grid without overlaps, every query with a refId,
// the app selector and a known unit, and rows for every area the
// contract names.
// ourMetric is a metric of the gateway's or its runtime's, with its
// selector if it has one.
var ourMetric = regexp.MustCompile(`\b((?:sas|go|process)_\w+)(\{[^}]*\})?`)

func TestDashboardShape(t *testing.T) {
	d := readDashboard(t)
	if d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, schemaVersion %d: want a title and a current schema (≥ 36)", d.Title, d.SchemaVersion)
	}
	if d.UID != nil {
		t.Errorf("uid %v: a hard-coded uid clashes on a second import", d.UID)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Datasource != nil && v.Datasource.UID != "${datasource}" {
			t.Errorf("variable %s: data source %q", v.Name, v.Datasource.UID)
		}
	}
	if vars["datasource"] != "datasource" || vars["app"] != "query" {
		t.Errorf("template variables %v: want datasource (type datasource) and app (query)", vars)
	}
	ids := map[int]bool{}
	cells := map[[2]int]string{}
	var rows []string
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID <= 0 {
			t.Errorf("panel %q: id %d repeated or not positive", p.Title, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
			t.Errorf("panel %q: gridPos %+v off the 24-column grid", p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := cells[[2]int{x, y}]; ok {
					t.Errorf("panels %q and %q overlap at %d,%d", p.Title, other, x, y)
				}
				cells[[2]int{x, y}] = p.Title
			}
		}
		if p.Type == "row" {
			rows = append(rows, p.Title)
			if len(p.Targets) != 0 || len(p.Panels) != 0 {
				t.Errorf("row %q has queries or nested panels", p.Title)
			}
			continue
		}
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q", p.Title, p.Type)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: data source %+v, want prometheus ${datasource}", p.Title, p.Datasource)
		}
		if !grafanaUnits[p.FieldConfig.Defaults.Unit] {
			t.Errorf("panel %q: unit %q", p.Title, p.FieldConfig.Defaults.Unit)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.RefID == "" || refs[q.RefID] || q.Expr == "" || q.Datasource == nil || q.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: query %+v", p.Title, q)
			}
			refs[q.RefID] = true
			// Every metric of ours is filtered by the app variable.
			// (A bare name, without braces, counts as one without it.)
			for _, m := range ourMetric.FindAllStringSubmatch(q.Expr, -1) {
				if !strings.Contains(m[2], `app=~"$app"`) {
					t.Errorf("panel %q: %s without the app selector", p.Title, m[1])
				}
			}
		}
	}
	for _, want := range []string{"Traffic", "Upstreams", "Spend", "Limits", "Ledger", "Dependencies and caches", "Runtime"} {
		if !strings.Contains(strings.Join(rows, "|"), want) {
			t.Errorf("rows %v: no %q", rows, want)
		}
	}
}
