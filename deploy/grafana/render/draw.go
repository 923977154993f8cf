package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
	"time"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Footer is the line at the bottom of every picture.
const Footer = "Rendered from Prometheus by deploy/grafana/render — not a Grafana screenshot"

// The layout is computed in CSS pixels of a 1920-pixel-wide Grafana page
// and drawn at Width/1920 of that (as a browser with that device pixel
// ratio would), so text keeps its proportions at any width.
const (
	pageCSSWidth   = 1920.0
	unitCSSHeight  = 30.0 // Grafana's grid height unit
	gap            = 8.0  // between panels
	headerHeight   = 56.0
	footerHeight   = 34.0
	pagePad        = 12.0
	panelTitleH    = 30.0
	panelPad       = 8.0
	legendFontSize = 12.0
	legendLineH    = 18.0
)

// Grafana's dark theme.
var (
	colPage      = rgb(0x111217)
	colPanel     = rgb(0x181b1f)
	colBorder    = rgb(0x2c3036)
	colText      = rgb(0xccccdc)
	colDim       = rgb(0x8e8e9e)
	colGrid      = rgb(0x2a2d33)
	colNoData    = rgb(0x9a9aa8)
	defaultValue = rgb(0x73bf69)
	// Grafana's classic palette, in its order.
	palette = []color.RGBA{
		rgb(0x7eb26d), rgb(0xeab839), rgb(0x6ed0e0), rgb(0xef843c), rgb(0xe24d42),
		rgb(0x1f78c1), rgb(0xba43a9), rgb(0x705da0), rgb(0x508642), rgb(0xcca300),
	}
	namedColors = map[string]color.RGBA{
		"green": rgb(0x73bf69), "red": rgb(0xf2495c), "yellow": rgb(0xfade2a), "orange": rgb(0xff9830),
		"blue": rgb(0x5794f2), "purple": rgb(0xb877d9), "text": rgb(0xccccdc), "transparent": {},
		"dark-green": rgb(0x37872d), "dark-red": rgb(0xc4162a), "dark-yellow": rgb(0xe0b400),
		"dark-orange": rgb(0xfa6400), "dark-blue": rgb(0x1f60c4), "dark-purple": rgb(0x8f3bb8),
		"semi-dark-green": rgb(0x56a64b), "semi-dark-red": rgb(0xe02f44), "semi-dark-orange": rgb(0xff780a),
	}
)

func rgb(v uint32) color.RGBA {
	return color.RGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 0xff}
}

// parseColor reads a Grafana color: a name or #rrggbb.
func parseColor(s string) (color.RGBA, bool) {
	if c, ok := namedColors[strings.ToLower(s)]; ok {
		return c, true
	}
	var v uint32
	if len(s) == 7 && s[0] == '#' {
		if _, err := fmt.Sscanf(s[1:], "%06x", &v); err == nil {
			return rgb(v), true
		}
	}
	return color.RGBA{}, false
}

// canvas draws in CSS pixels with the origin at the top left.
type canvas struct {
	c draw.Canvas
	h float64 // height in CSS pixels
}

func (cv canvas) pt(x, y float64) vg.Point {
	return vg.Point{X: vg.Length(x), Y: vg.Length(cv.h - y)}
}

func (cv canvas) rect(x, y, w, h float64) vg.Rectangle {
	return vg.Rectangle{Min: cv.pt(x, y+h), Max: cv.pt(x+w, y)}
}

func (cv canvas) fill(x, y, w, h float64, col color.Color) {
	r := cv.rect(x, y, w, h)
	cv.c.FillPolygon(col, []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

func (cv canvas) stroke(x, y, w, h float64, col color.Color) {
	r := cv.rect(x, y, w, h)
	cv.c.StrokeLines(draw.LineStyle{Color: col, Width: 1},
		[]vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}, r.Min})
}

func (cv canvas) line(x0, y0, x1, y1, width float64, col color.Color) {
	cv.c.StrokeLine2(draw.LineStyle{Color: col, Width: vg.Length(width)}, vg.Length(x0), vg.Length(cv.h-y0), vg.Length(x1), vg.Length(cv.h-y1))
}

func textStyle(size float64, bold bool, col color.Color) text.Style {
	f := font.Font{Typeface: "Liberation", Variant: "Sans", Size: vg.Length(size)}
	if bold {
		f.Weight = xfont.WeightBold
	}
	return text.Style{Color: col, Font: f, XAlign: draw.XLeft, YAlign: draw.YTop, Handler: plot.DefaultTextHandler}
}

// text draws s with its top-left (or, with xalign, top-center/right)
// corner at x, y.
func (cv canvas) text(x, y float64, s string, sty text.Style, xalign draw.XAlignment) {
	sty.XAlign = xalign
	cv.c.FillText(sty, cv.pt(x, y), s)
}

// fit shortens s with an ellipsis until it is at most w wide.
func fit(s string, sty text.Style, w float64) string {
	if float64(sty.Width(s)) <= w {
		return s
	}
	r := []rune(s)
	lo, hi := 0, len(r)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if float64(sty.Width(string(r[:mid])+"…")) <= w {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if lo == 0 {
		return ""
	}
	return string(r[:lo]) + "…"
}

// PageSize is the picture's size in pixels and the scale from CSS pixels.
func PageSize(panels []PanelData, width int, unitHeight float64) (w, h int, dpi int) {
	dpi = max(1, int(math.Round(72*float64(width)/pageCSSWidth)))
	s := float64(dpi) / 72
	css := layoutHeight(panels, unitCSS(unitHeight, s))
	return width, int(math.Ceil(css * s)), dpi
}

// unitCSS is the grid height unit in CSS pixels: the flag's pixels
// unscaled, or Grafana's 30.
func unitCSS(unitHeight, s float64) float64 {
	if unitHeight > 0 {
		return unitHeight / s
	}
	return unitCSSHeight
}

func layoutHeight(panels []PanelData, unit float64) float64 {
	bottom := 0
	for _, p := range panels {
		bottom = max(bottom, p.Panel.GridPos.Y+p.Panel.GridPos.H)
	}
	return headerHeight + float64(bottom)*unit + footerHeight
}

// Draw lays the panels out as the dashboard does and writes a PNG.
func Draw(w io.Writer, title string, panels []PanelData, opts Options) error {
	if opts.Width < 200 {
		return fmt.Errorf("width %d is too small (200 pixels at least)", opts.Width)
	}
	loc := opts.Location
	if loc == nil {
		loc = time.UTC
	}
	width, height, dpi := PageSize(panels, opts.Width, opts.UnitHeight)
	vc := vgimg.NewWith(vgimg.UseImage(image.NewRGBA(image.Rect(0, 0, width, height))), vgimg.UseDPI(dpi))
	dc := draw.New(vc)
	cv := canvas{c: dc, h: float64(dc.Max.Y - dc.Min.Y)}
	cssW := float64(dc.Max.X - dc.Min.X)
	cv.fill(0, 0, cssW, cv.h, colPage)
	unit := unitCSS(opts.UnitHeight, float64(dpi)/72)
	col := (cssW - 2*pagePad + gap) / 24

	// Header: the dashboard's title, the time range on the right.
	tsty := textStyle(20, true, colText)
	rng := fmt.Sprintf("%s to %s %s  ·  step %s",
		opts.Start.In(loc).Format("2006-01-02 15:04:05"), opts.End.In(loc).Format(sameDayLayout(opts.Start.In(loc), opts.End.In(loc))),
		zoneName(opts.End.In(loc)), PromDuration(opts.Step))
	rsty := textStyle(14, false, colDim)
	rw := float64(rsty.Width(rng))
	cv.text(pagePad, 16, fit(title, tsty, cssW-3*pagePad-rw), tsty, draw.XLeft)
	cv.text(cssW-pagePad, 20, rng, rsty, draw.XRight)

	for _, p := range panels {
		g := p.Panel.GridPos
		x := pagePad + float64(g.X)*col
		y := headerHeight + float64(g.Y)*unit
		pw := float64(g.W)*col - gap
		ph := float64(g.H)*unit - gap
		if p.Panel.IsRow() {
			drawRow(cv, p, x, y, pw, float64(g.H)*unit)
			continue
		}
		drawPanel(cv, p, x, y, pw, ph, opts, loc)
	}

	fsty := textStyle(12, false, colDim)
	cv.text(pagePad, cv.h-footerHeight+12, Footer, fsty, draw.XLeft)

	return png.Encode(w, vc.Image())
}

func sameDayLayout(a, b time.Time) string {
	if a.Year() == b.Year() && a.YearDay() == b.YearDay() {
		return "15:04:05"
	}
	return "2006-01-02 15:04:05"
}

func zoneName(t time.Time) string {
	name, off := t.Zone()
	if name != "" {
		return name
	}
	return fmt.Sprintf("UTC%+03d:%02d", off/3600, (off%3600)/60)
}

func drawRow(cv canvas, p PanelData, x, y, w, h float64) {
	sty := textStyle(16, true, colText)
	cv.text(x, y+(h-18)/2+1, fit(p.Panel.Title, sty, w), sty, draw.XLeft)
	cv.line(x, y+h-3, x+w, y+h-3, 1, colBorder)
}

func drawPanel(cv canvas, p PanelData, x, y, w, h float64, opts Options, loc *time.Location) {
	cv.fill(x, y, w, h, colPanel)
	cv.stroke(x, y, w, h, colBorder)
	tsty := textStyle(14, true, colText)
	cv.text(x+panelPad, y+8, fit(p.Panel.Title, tsty, w-2*panelPad), tsty, draw.XLeft)

	ix, iy, iw, ih := x+panelPad, y+panelTitleH, w-2*panelPad, h-panelTitleH-panelPad
	if iw < 20 || ih < 20 {
		return
	}
	switch {
	case p.Skipped != "":
		centered(cv, ix, iy, iw, ih, fmt.Sprintf("%s panel: not drawn", p.Panel.Type), 14)
	case !p.HasData:
		centered(cv, ix, iy, iw, ih, "No data", 16)
	case p.Panel.Type == "stat" || p.Panel.Type == "gauge" || p.Panel.Type == "bargauge":
		drawStat(cv, p, ix, iy, iw, ih)
	default:
		drawTimeSeries(cv, p, ix, iy, iw, ih, opts, loc)
	}
}

func centered(cv canvas, x, y, w, h float64, s string, size float64) {
	sty := textStyle(size, false, colNoData)
	cv.text(x+w/2, y+h/2-size/2, fit(s, sty, w), sty, draw.XCenter)
}

func seriesColor(p PanelData, i int) color.RGBA {
	c := p.Panel.FieldConfig.Defaults.Color
	if c.Mode == "fixed" {
		if col, ok := parseColor(c.FixedColor); ok {
			return col
		}
	}
	return palette[i%len(palette)]
}

// legendItem is one entry of a panel's legend.
type legendItem struct {
	name  string
	color color.Color // nil: a note, no swatch
}

// legendLines flows the items into lines of width w, at most maxLines; if
// some do not fit, the last shown is a note of how many are missing.
func legendLines(items []legendItem, w float64, maxLines int) [][]legendItem {
	sty := textStyle(legendFontSize, false, colText)
	itemW := func(it legendItem) float64 {
		sw := 0.0
		if it.color != nil {
			sw = 22
		}
		return sw + float64(sty.Width(it.name)) + 16
	}
	var lines [][]legendItem
	var cur []legendItem
	used := 0.0
	for i := 0; i < len(items); i++ {
		it := items[i]
		if it.color != nil {
			it.name = fit(it.name, sty, w-22-16)
		}
		iw := itemW(it)
		if len(cur) > 0 && used+iw > w {
			lines = append(lines, cur)
			cur, used = nil, 0
			if len(lines) == maxLines {
				rest := len(items) - i
				last := lines[len(lines)-1]
				for len(last) > 0 && lineWidth(last, itemW)+itemW(legendItem{name: moreNote(rest)}) > w {
					last = last[:len(last)-1]
					rest++
				}
				lines[len(lines)-1] = append(last, legendItem{name: moreNote(rest)})
				return lines
			}
		}
		cur = append(cur, it)
		used += iw
	}
	if len(cur) > 0 {
		lines = append(lines, cur)
	}
	return lines
}

func moreNote(n int) string { return fmt.Sprintf("+%d more", n) }

func lineWidth(items []legendItem, itemW func(legendItem) float64) float64 {
	t := 0.0
	for _, it := range items {
		t += itemW(it)
	}
	return t
}

func drawLegend(cv canvas, lines [][]legendItem, x, y float64) {
	sty := textStyle(legendFontSize, false, colText)
	note := textStyle(legendFontSize, false, colDim)
	for li, line := range lines {
		cx := x
		ly := y + float64(li)*legendLineH
		for _, it := range line {
			if it.color != nil {
				cv.line(cx, ly+7, cx+14, ly+7, 4, it.color)
				cx += 22
				cv.text(cx, ly, it.name, sty, draw.XLeft)
				cx += float64(sty.Width(it.name)) + 16
			} else {
				cv.text(cx, ly, it.name, note, draw.XLeft)
				cx += float64(note.Width(it.name)) + 16
			}
		}
	}
}

func drawTimeSeries(cv canvas, p PanelData, x, y, w, h float64, opts Options, loc *time.Location) {
	var items []legendItem
	for i, s := range p.Series {
		items = append(items, legendItem{name: s.Name, color: seriesColor(p, i)})
	}
	if d := p.Dropped(); d > 0 {
		items = append(items, legendItem{name: fmt.Sprintf("(%d more series not drawn)", d)})
	}
	maxLines := max(1, int(h*0.3/legendLineH))
	lines := legendLines(items, w, maxLines)
	legendH := float64(len(lines))*legendLineH + 4
	plotH := h - legendH
	if plotH < 30 {
		plotH, lines = h, nil
	}
	drawLegend(cv, lines, x, y+plotH+4)

	d := p.Panel.FieldConfig.Defaults
	pl := plot.New()
	pl.BackgroundColor = nil
	tickSty := textStyle(12, false, colDim)
	for _, ax := range []*plot.Axis{&pl.X, &pl.Y} {
		ax.Tick.Label.Color, ax.Tick.Label.Font = tickSty.Color, tickSty.Font
		ax.Tick.Length = 0
		ax.Tick.Width = 0
		ax.LineStyle = draw.LineStyle{Color: color.Transparent, Width: 0}
	}
	pl.X.Padding, pl.Y.Padding = 6, 8

	start := float64(opts.Start.UnixNano()) / 1e9
	end := float64(opts.End.UnixNano()) / 1e9
	pl.X.Min, pl.X.Max = start, end
	// A clock label centered closer to the plot's left edge than half its
	// width would run into the y axis's lowest label (and at the right
	// edge out of the panel): those ticks are left out.
	half := float64(tickSty.Width("00:00:00")) / 2
	pl.X.Tick.Marker = plot.ConstantTicks(trimEdgeTicks(TimeTicks(start, end, int(w/100), loc), start, end, (half+4)/math.Max(w-70, 1)))

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range p.Series {
		for _, pt := range s.Points {
			if !math.IsNaN(pt.V) && !math.IsInf(pt.V, 0) {
				lo, hi = math.Min(lo, pt.V), math.Max(hi, pt.V)
			}
		}
	}
	ymin, ymax, yticks := YAxis(p.Unit, lo, hi, d.Min, d.Max, max(2, int(plotH/45)))
	pl.Y.Min, pl.Y.Max = ymin, ymax
	pl.Y.Tick.Marker = plot.ConstantTicks(yticks)

	grid := plotter.NewGrid()
	grid.Horizontal = draw.LineStyle{Color: colGrid, Width: 1}
	grid.Vertical = draw.LineStyle{Color: colGrid, Width: 1}
	pl.Add(grid)

	lineW := 1.5
	if d.Custom.LineWidth != nil && *d.Custom.LineWidth > 0 {
		lineW = *d.Custom.LineWidth
	}
	step := opts.Step.Seconds()
	for i, s := range p.Series {
		col := seriesColor(p, i)
		var fill color.Color
		if d.Custom.FillOpacity != nil && *d.Custom.FillOpacity > 0 {
			a := uint8(math.Min(*d.Custom.FillOpacity, 100) / 100 * 255)
			fill = color.NRGBA{R: col.R, G: col.G, B: col.B, A: a}
		}
		for _, seg := range Segments(s.Points, step) {
			if len(seg) == 1 {
				sc, err := plotter.NewScatter(seg)
				if err != nil {
					continue
				}
				sc.GlyphStyle = draw.GlyphStyle{Color: col, Radius: vg.Length(lineW + 1), Shape: draw.CircleGlyph{}}
				pl.Add(sc)
				continue
			}
			l, err := plotter.NewLine(seg)
			if err != nil {
				continue
			}
			l.LineStyle = draw.LineStyle{Color: col, Width: vg.Length(lineW)}
			l.FillColor = fill
			pl.Add(l)
		}
	}
	// Add widened the axes to the data; the axes are the time range and
	// the nice y range.
	pl.X.Min, pl.X.Max = start, end
	pl.Y.Min, pl.Y.Max = ymin, ymax
	pl.Draw(draw.Canvas{Canvas: cv.c.Canvas, Rectangle: cv.rect(x, y, w, plotH)})
}

// Segments splits a series where a sample is missing (a gap of more than
// one and a half steps) or not finite, as Grafana leaves such gaps open.
func Segments(ps []Point, step float64) []plotter.XYs {
	var out []plotter.XYs
	var cur plotter.XYs
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
			cur = nil
		}
	}
	for i, p := range ps {
		if math.IsNaN(p.V) || math.IsInf(p.V, 0) {
			flush()
			continue
		}
		if i > 0 && len(cur) > 0 && p.T-cur[len(cur)-1].X > 1.5*step {
			flush()
		}
		cur = append(cur, plotter.XY{X: p.T, Y: p.V})
	}
	flush()
	return out
}

// YAxis chooses the y range and ticks: from the panel's min/max if set,
// else from the data, starting at zero when nothing is negative, and
// rounded out to whole ticks.
func YAxis(unit string, lo, hi float64, setMin, setMax *float64, n int) (float64, float64, []plot.Tick) {
	if math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 0, 1
	}
	if lo >= 0 {
		lo = 0
	}
	if setMin != nil {
		lo = *setMin
	}
	if setMax != nil {
		hi = *setMax
	}
	if hi <= lo {
		if lo == 0 {
			hi = 1
		} else {
			hi = lo + math.Abs(lo)*0.1
			lo -= math.Abs(lo) * 0.1
		}
	}
	step := NiceStep(unit, hi-lo, math.Max(math.Abs(lo), math.Abs(hi)), n)
	if setMin == nil {
		lo = math.Floor(lo/step+1e-9) * step
	}
	if setMax == nil {
		hi = math.Ceil(hi/step-1e-9) * step
	}
	var vals []float64
	for v := math.Ceil(lo/step-1e-9) * step; v <= hi+step*1e-9; v += step {
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		vals = append(vals, v)
	}
	labels := FormatTicks(unit, vals, step)
	ticks := make([]plot.Tick, len(vals))
	for i, v := range vals {
		ticks[i] = plot.Tick{Value: v, Label: labels[i]}
	}
	return lo, hi, ticks
}

// TimeTicks are clock-time ticks on whole intervals (1 s … 1 day, chosen
// so there are at most about n of them) between start and end, unix
// seconds.
func TimeTicks(start, end float64, n int, loc *time.Location) []plot.Tick {
	n = max(n, 2)
	steps := []float64{1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800}
	span := end - start
	step := steps[len(steps)-1]
	for _, s := range steps {
		if span/s <= float64(n) {
			step = s
			break
		}
	}
	layout := "15:04"
	switch {
	case step < 60:
		layout = "15:04:05"
	case step >= 86400:
		layout = "01/02"
	case span > 86400:
		layout = "01/02 15:04"
	}
	_, off := time.Unix(int64(start), 0).In(loc).Zone()
	first := math.Ceil((start+float64(off))/step)*step - float64(off)
	var ticks []plot.Tick
	for t := first; t <= end+1e-9; t += step {
		sec, frac := math.Modf(t)
		ticks = append(ticks, plot.Tick{Value: t, Label: time.Unix(int64(sec), int64(frac*1e9)).In(loc).Format(layout)})
	}
	return ticks
}

// trimEdgeTicks drops ticks within frac of the range's ends, keeping two
// at least.
func trimEdgeTicks(ticks []plot.Tick, start, end, frac float64) []plot.Tick {
	var out []plot.Tick
	for _, t := range ticks {
		f := (t.Value - start) / (end - start)
		if f >= frac && f <= 1-frac {
			out = append(out, t)
		}
	}
	if len(out) < 2 {
		return ticks
	}
	return out
}

func drawStat(cv canvas, p PanelData, x, y, w, h float64) {
	n := len(p.Series)
	cellW := w / float64(n)
	d := p.Panel.FieldConfig.Defaults
	dec := -1
	if d.Decimals != nil {
		dec = *d.Decimals
	}
	for i, s := range p.Series {
		v, ok := lastFinite(s.Points)
		val := "No data"
		col := color.Color(colNoData)
		if ok {
			val = FormatValue(p.Unit, v, dec)
			col = thresholdColor(d, v)
		}
		cx := x + float64(i)*cellW
		nameH := 0.0
		if n > 1 {
			nameH = 20
			nsty := textStyle(12, false, colDim)
			cv.text(cx+cellW/2, y+h-16, fit(s.Name, nsty, cellW-8), nsty, draw.XCenter)
		}
		size := math.Min((h-nameH)*0.6, 64)
		sty := textStyle(size, true, col)
		for size > 10 && float64(sty.Width(val)) > cellW-12 {
			size *= 0.9
			sty = textStyle(size, true, col)
		}
		cv.text(cx+cellW/2, y+(h-nameH)/2-size*0.55, val, sty, draw.XCenter)
	}
}

func lastFinite(ps []Point) (float64, bool) {
	for i := len(ps) - 1; i >= 0; i-- {
		if !math.IsNaN(ps[i].V) && !math.IsInf(ps[i].V, 0) {
			return ps[i].V, true
		}
	}
	return 0, false
}

// thresholdColor is the color of the highest threshold step at or below
// v (the base step has no value), Grafana's default green without any.
func thresholdColor(d FieldDefaults, v float64) color.Color {
	if d.Color.Mode == "fixed" {
		if c, ok := parseColor(d.Color.FixedColor); ok {
			return c
		}
	}
	col := defaultValue
	for _, st := range d.Thresholds.Steps {
		if st.Value == nil || v >= *st.Value {
			if c, ok := parseColor(st.Color); ok {
				col = c
			}
		}
	}
	return col
}
