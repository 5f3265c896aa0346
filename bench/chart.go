package bench

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
)

// chart draws a line chart as inline SVG, for the HTML report: no script,
// nothing fetched, readable when the file is opened from disk.
type chart struct {
	title      string
	xLabel     string
	yLabel     string
	logX, logY bool
	xFormat    func(float64) string
	yFormat    func(float64) string
	lines      []line
	bands      []band
}

// line is one series of points; a band fills the area between two.
type line struct {
	name  string
	color string
	pts   []point
}

type band struct {
	color    string
	low, top []point // same xs
}

type point struct{ x, y float64 }

// The chart's size in SVG units, and its margins for the axes' labels.
const (
	chartW, chartH            = 760, 280
	marginL, marginR, marginT = 70, 150, 28
	marginB                   = 40
	plotW, plotH              = chartW - marginL - marginR, chartH - marginT - marginB
)

// svg renders the chart; a chart without a point says so instead.
func (c *chart) svg() template.HTML {
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart"><figcaption>%s</figcaption>`, html.EscapeString(c.title))
	var xs, ys []float64
	for _, l := range c.lines {
		for _, p := range l.pts {
			if c.usable(p) {
				xs, ys = append(xs, p.x), append(ys, p.y)
			}
		}
	}
	if len(xs) == 0 {
		b.WriteString(`<p class="nodata">no data</p></figure>`)
		return template.HTML(b.String())
	}
	x := newAxis(xs, c.logX, true)
	y := newAxis(ys, c.logY, true)
	fmt.Fprintf(&b, `<svg viewBox="0 0 %d %d" role="img" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH)
	fmt.Fprintf(&b, `<rect class="plot" x="%d" y="%d" width="%d" height="%d"/>`, marginL, marginT, plotW, plotH)
	sx := func(v float64) float64 { return marginL + x.pos(v)*plotW }
	sy := func(v float64) float64 { return marginT + (1-y.pos(v))*plotH }
	for _, t := range x.ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>`, sx(t), marginT, sx(t), marginT+plotH)
		fmt.Fprintf(&b, `<text class="tick" x="%.1f" y="%d" text-anchor="middle">%s</text>`, sx(t), marginT+plotH+16, html.EscapeString(c.xFormat(t)))
	}
	for _, t := range y.ticks {
		fmt.Fprintf(&b, `<line class="grid" x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>`, marginL, sy(t), marginL+plotW, sy(t))
		fmt.Fprintf(&b, `<text class="tick" x="%d" y="%.1f" text-anchor="end">%s</text>`, marginL-6, sy(t)+4, html.EscapeString(c.yFormat(t)))
	}
	fmt.Fprintf(&b, `<text class="label" x="%d" y="%d" text-anchor="middle">%s</text>`, marginL+plotW/2, chartH-4, html.EscapeString(c.xLabel))
	fmt.Fprintf(&b, `<text class="label" x="14" y="%d" text-anchor="middle" transform="rotate(-90 14 %d)">%s</text>`, marginT+plotH/2, marginT+plotH/2, html.EscapeString(c.yLabel))
	for _, bd := range c.bands {
		// Along the top edge, then back along the bottom one.
		var d strings.Builder
		for i, p := range bd.top {
			cmd := "L"
			if i == 0 {
				cmd = "M"
			}
			fmt.Fprintf(&d, "%s%.1f,%.1f ", cmd, sx(p.x), sy(y.clamp(p.y)))
		}
		for i := len(bd.low) - 1; i >= 0; i-- {
			p := bd.low[i]
			fmt.Fprintf(&d, "L%.1f,%.1f ", sx(p.x), sy(y.clamp(p.y)))
		}
		fmt.Fprintf(&b, `<path class="band" fill="%s" d="%sZ"/>`, bd.color, d.String())
	}
	for i, l := range c.lines {
		var d strings.Builder
		var first point
		n := 0
		for _, p := range l.pts {
			if !c.usable(p) {
				continue
			}
			cmd := "L"
			if n == 0 {
				cmd, first = "M", p
			}
			fmt.Fprintf(&d, "%s%.1f,%.1f ", cmd, sx(p.x), sy(p.y))
			n++
		}
		fmt.Fprintf(&b, `<path class="line" data-series="%s" data-points="%d" stroke="%s" d="%s"><title>%s</title></path>`,
			html.EscapeString(l.name), n, l.color, strings.TrimSpace(d.String()), html.EscapeString(l.name))
		if n == 1 { // a path of one point draws nothing
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`, sx(first.x), sy(first.y), l.color)
		}
		ly := marginT + 8 + 16*i
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`, chartW-marginR+10, ly, chartW-marginR+28, ly, l.color)
		fmt.Fprintf(&b, `<text class="legend" x="%d" y="%d">%s</text>`, chartW-marginR+32, ly+4, html.EscapeString(l.name))
	}
	b.WriteString(`</svg></figure>`)
	return template.HTML(b.String())
}

// usable reports whether p can be drawn: within what a report's figures
// can be (which keeps the axes' arithmetic exact enough), and positive on a
// log axis.
func (c *chart) usable(p point) bool {
	in := func(v float64, log bool) bool {
		if log {
			return v >= 1e-6 && v <= maxPlotted
		}
		return v >= -maxPlotted && v <= maxPlotted // false for NaN too
	}
	return in(p.x, c.logX) && in(p.y, c.logY)
}

// maxPlotted is beyond any figure of a run: 10^12 ns, per second or seconds.
const maxPlotted = 1e12

// axis maps values to [0, 1] along a linear or logarithmic scale.
type axis struct {
	lo, hi float64
	log    bool
	ticks  []float64
}

// newAxis fits an axis to vs; fromZero starts a linear axis at 0.
func newAxis(vs []float64, log, fromZero bool) axis {
	lo, hi := vs[0], vs[0]
	for _, v := range vs {
		lo, hi = min(lo, v), max(hi, v)
	}
	if log {
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		a := axis{lo: lo, hi: hi, log: true}
		decades := int(math.Round(math.Log10(hi / lo)))
		for i := 0; i <= decades; i++ {
			e := lo * math.Pow(10, float64(i))
			a.ticks = append(a.ticks, e)
			if decades <= 2 {
				for _, m := range []float64{2, 5} {
					if e*m < hi {
						a.ticks = append(a.ticks, e*m)
					}
				}
			}
		}
		return a
	}
	if fromZero && lo > 0 {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	step := niceStep((hi - lo) / 5)
	lo = math.Floor(lo/step) * step
	hi = math.Ceil(hi/step) * step
	a := axis{lo: lo, hi: hi}
	for i := range int(math.Round((hi-lo)/step)) + 1 {
		a.ticks = append(a.ticks, lo+float64(i)*step)
	}
	return a
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func (a axis) pos(v float64) float64 {
	if a.log {
		return math.Log10(v/a.lo) / math.Log10(a.hi/a.lo)
	}
	return (v - a.lo) / (a.hi - a.lo)
}

// clamp keeps a band's edge drawable on a log axis.
func (a axis) clamp(v float64) float64 {
	if a.log && v < a.lo {
		return a.lo
	}
	return v
}
