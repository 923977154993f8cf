package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Dashboard is the part of a Grafana dashboard JSON model that the renderer
// reads.
type Dashboard struct {
	Title      string `json:"title"`
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Variable is one entry of templating.list.
type Variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	AllValue   string          `json:"allValue"`
	IncludeAll bool            `json:"includeAll"`
	Current    struct {
		Value json.RawMessage `json:"value"`
	} `json:"current"`
	Options []struct {
		Value json.RawMessage `json:"value"`
	} `json:"options"`
}

// GridPos is a panel's place on Grafana's 24-column grid; H is in grid
// units (about 30 px each).
type GridPos struct {
	X int `json:"x"`
	Y int `json:"y"`
	W int `json:"w"`
	H int `json:"h"`
}

// Panel is one entry of panels[] (or of a row's nested panels[]).
type Panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	GridPos     GridPos         `json:"gridPos"`
	Datasource  json.RawMessage `json:"datasource"`
	Targets     []Target        `json:"targets"`
	FieldConfig struct {
		Defaults FieldDefaults `json:"defaults"`
	} `json:"fieldConfig"`
	// YAxes is the old "graph" panel's axes: its unit is yaxes[0].format.
	YAxes []struct {
		Format string `json:"format"`
	} `json:"yaxes"`
	Collapsed bool    `json:"collapsed"`
	Panels    []Panel `json:"panels"`
}

// Unit is the panel's Grafana unit id: fieldConfig.defaults.unit, or the
// old graph panel's left y axis format.
func (p Panel) Unit() string {
	if u := p.FieldConfig.Defaults.Unit; u != "" {
		return u
	}
	if len(p.YAxes) > 0 {
		return p.YAxes[0].Format
	}
	return ""
}

// FieldDefaults is fieldConfig.defaults.
type FieldDefaults struct {
	Unit     string   `json:"unit"`
	Min      *float64 `json:"min"`
	Max      *float64 `json:"max"`
	Decimals *int     `json:"decimals"`
	Color    struct {
		Mode       string `json:"mode"`
		FixedColor string `json:"fixedColor"`
	} `json:"color"`
	Custom struct {
		FillOpacity *float64 `json:"fillOpacity"`
		LineWidth   *float64 `json:"lineWidth"`
	} `json:"custom"`
	Thresholds struct {
		Steps []struct {
			Color string   `json:"color"`
			Value *float64 `json:"value"`
		} `json:"steps"`
	} `json:"thresholds"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string          `json:"refId"`
	Expr         string          `json:"expr"`
	LegendFormat string          `json:"legendFormat"`
	Hide         bool            `json:"hide"`
	Datasource   json.RawMessage `json:"datasource"`
}

// ParseDashboard decodes a dashboard JSON model. It accepts both a bare
// dashboard and the {"dashboard": {...}} envelope of Grafana's HTTP API.
func ParseDashboard(data []byte) (*Dashboard, error) {
	var env struct {
		Dashboard json.RawMessage `json:"dashboard"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	if len(env.Dashboard) > 0 && string(env.Dashboard) != "null" {
		data = env.Dashboard
	}
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	if len(d.Panels) == 0 {
		return nil, fmt.Errorf("dashboard %q has no panels", d.Title)
	}
	return &d, nil
}

// IsRow reports whether p is a row header.
func (p Panel) IsRow() bool { return p.Type == "row" }

// Layout returns every panel of the dashboard, rows' nested panels
// included, in reading order (by y, then x), with positions as if every
// row were expanded: a collapsed row keeps its panels inside it, and
// everything below it was laid out without them, so those panels are put
// back under their row and what follows is moved down by their height.
func (d *Dashboard) Layout() []Panel {
	top := make([]Panel, len(d.Panels))
	copy(top, d.Panels)
	for i := range top {
		top[i].GridPos = normalizeGridPos(top[i])
	}
	sortPanels(top)
	var out []Panel
	shift := 0
	for _, p := range top {
		p.GridPos.Y += shift
		nested := p.Panels
		p.Panels = nil
		out = append(out, p)
		if !p.IsRow() || len(nested) == 0 {
			continue
		}
		inner := make([]Panel, len(nested))
		copy(inner, nested)
		minY, maxBottom := int(^uint(0)>>1), 0
		for i := range inner {
			inner[i].GridPos = normalizeGridPos(inner[i])
			inner[i].Panels = nil
			if inner[i].GridPos.Y < minY {
				minY = inner[i].GridPos.Y
			}
		}
		for i := range inner {
			inner[i].GridPos.Y += p.GridPos.Y + p.GridPos.H - minY
			if b := inner[i].GridPos.Y + inner[i].GridPos.H; b > maxBottom {
				maxBottom = b
			}
		}
		sortPanels(inner)
		out = append(out, inner...)
		shift += maxBottom - (p.GridPos.Y + p.GridPos.H)
	}
	sortPanels(out)
	return out
}

func sortPanels(ps []Panel) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i].GridPos, ps[j].GridPos
		if a.Y != b.Y {
			return a.Y < b.Y
		}
		return a.X < b.X
	})
}

// normalizeGridPos fills in Grafana's defaults for a missing or broken
// gridPos: rows span the width and are one unit high, other panels are
// 12×8, and nothing leaves the 24 columns.
func normalizeGridPos(p Panel) GridPos {
	g := p.GridPos
	if p.IsRow() {
		g.X, g.W = 0, 24
		if g.H <= 0 {
			g.H = 1
		}
	}
	if g.W <= 0 {
		g.W = 12
	}
	if g.H <= 0 {
		g.H = 8
	}
	if g.X < 0 {
		g.X = 0
	}
	if g.Y < 0 {
		g.Y = 0
	}
	if g.W > 24 {
		g.W = 24
	}
	if g.X+g.W > 24 {
		g.X = 24 - g.W
	}
	return g
}

// datasourceType is the type of a panel's or target's datasource field,
// which is an object {type, uid} in current dashboards, a name string in
// old ones, or absent. Only the object form says a type.
func datasourceType(raw json.RawMessage) string {
	var ds struct {
		Type string `json:"type"`
	}
	if len(raw) == 0 || raw[0] != '{' {
		return ""
	}
	if json.Unmarshal(raw, &ds) != nil {
		return ""
	}
	return ds.Type
}

// Queries returns the targets of p that the renderer runs: not hidden, with
// an expression, and not of another datasource type than Prometheus (an
// unset type counts as Prometheus: the dashboard's datasource variable).
func (p Panel) Queries() []Target {
	var out []Target
	for _, t := range p.Targets {
		if t.Hide || strings.TrimSpace(t.Expr) == "" {
			continue
		}
		typ := datasourceType(t.Datasource)
		if typ == "" {
			typ = datasourceType(p.Datasource)
		}
		if typ != "" && typ != "prometheus" && typ != "datasource" {
			continue
		}
		out = append(out, t)
	}
	return out
}
