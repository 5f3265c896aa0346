package bench

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// Labeled is a result with the name it has in a report.
type Labeled struct {
	Label  string
	Result *Result
}

// runColors tell runs apart in a report's charts.
var runColors = [...]string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"}

// percentileColors draw one run's latency over time, p50 to max.
var percentileColors = [...]string{"#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#7f7f7f"}

// WriteHTML writes a report of runs as one HTML file that needs nothing
// else: its charts are inline SVG, it has no script, and its content
// security policy forbids fetching anything. It has the latency of each
// second as percentile bands, the percentile spectrum, throughput and
// errors over time, the server's CPU and memory when observed, and each
// run's parameters and figures.
func WriteHTML(w io.Writer, runs []Labeled) error {
	if len(runs) == 0 {
		return fmt.Errorf("no runs to report")
	}
	page := htmlPage{Generated: time.Now().UTC().Format(time.RFC3339)}
	for i, run := range runs {
		r := run.Result
		page.Runs = append(page.Runs, htmlRun{
			Label:   run.Label,
			Color:   runColors[i%len(runColors)],
			Result:  r,
			Summary: summaryRows(r),
			Compare: compareRow(r),
			Latency: latencyOverTime(run).svg(),
		})
	}
	page.Spectrum = spectrum(runs).svg()
	page.Throughput = overTime(runs, "Throughput", throughputUnit(runs), func(r *Result, s Second) float64 {
		if r.Mode == Bulk {
			return float64(s.Ops) / s.Seconds / 1e6
		}
		return float64(s.Ops) / s.Seconds
	}, func(r *Result) string {
		if r.Mode == Bulk {
			return "MB/s each way"
		}
		return r.Unit + "s/s"
	}).svg()
	page.Errors = overTime(runs, "Errors and mismatches", "per second", func(_ *Result, s Second) float64 {
		return float64(s.Errors + s.Mismatches)
	}, func(*Result) string { return "errors + mismatches" }).svg()
	for _, run := range runs {
		if run.Result.Server != nil {
			page.CPU = overTime(runs, "Server CPU", "% of one CPU", func(r *Result, s Second) float64 {
				if r.Server == nil {
					return math.NaN()
				}
				return 100 * s.CPUSeconds / s.Seconds
			}, func(*Result) string { return "CPU" }).svg()
			page.Memory = overTime(runs, "Server resident memory", "MiB", func(r *Result, s Second) float64 {
				if r.Server == nil {
					return math.NaN()
				}
				return float64(s.RSS) / (1 << 20)
			}, func(*Result) string { return "RSS" }).svg()
			break
		}
	}
	return reportTemplate.Execute(w, page)
}

type htmlPage struct {
	Generated                                 string
	Runs                                      []htmlRun
	Spectrum, Throughput, Errors, CPU, Memory template.HTML
}

type htmlRun struct {
	Label   string
	Color   string
	Result  *Result
	Summary [][2]string
	Compare []string // the row of the table that compares runs
	Latency template.HTML
}

// summaryRows are a run's parameters and figures for its table.
func summaryRows(r *Result) [][2]string {
	rows := [][2]string{{"Mode", r.describe()}, {"Server", cmp.Or(r.URL, r.Addr)}}
	if !r.Start.IsZero() {
		rows = append(rows, [2]string{"Started", r.Start.Format(time.RFC3339)})
	}
	rows = append(rows,
		[2]string{"Measured", seconds(r.Seconds)},
		[2]string{"Verified", fmt.Sprintf("%d %ss (%.1f/s), %d bytes (%.2f MB/s each way)", r.Ops, r.Unit, r.OpsPerSec, r.Bytes, r.MBPerSec)},
		[2]string{"Errors", r.errorText()},
		[2]string{"Mismatches", r.mismatchText()})
	if l := r.Latency; l != nil {
		rows = append(rows, [2]string{"Latency", fmt.Sprintf("%s; p50 %s, p90 %s, p99 %s, p99.9 %s, max %s (%d samples)",
			r.latencyMeaning(), duration(l.P50), duration(l.P90), duration(l.P99), duration(l.P999), duration(l.Max), l.Count)})
	}
	if sc := r.Schedule; sc != nil {
		if l := sc.LatencyFromSend; l != nil {
			rows = append(rows, [2]string{"Latency from actual send", fmt.Sprintf("p50 %s, p90 %s, p99 %s, p99.9 %s, max %s (%d samples)",
				duration(l.P50), duration(l.P90), duration(l.P99), duration(l.P999), duration(l.Max), l.Count)})
		}
		rows = append(rows, [2]string{"Behind schedule", fmt.Sprintf("%d of %d messages sent more than %s late", sc.Behind, r.Ops, duration(sc.Slack))})
	}
	for _, s := range r.Steps {
		row := fmt.Sprintf("%.1f/s verified, %d behind schedule, %d errors, %d mismatches", s.OpsPerSec, s.Behind, s.Errors, s.Mismatches)
		if l := s.Latency; l != nil {
			row += fmt.Sprintf("; p50 %s, p99 %s", duration(l.P50), duration(l.P99))
		}
		if l := s.LatencyFromSend; l != nil {
			row += fmt.Sprintf(", p99 from actual send %s", duration(l.P99))
		}
		if len(s.Missed) > 0 {
			row += "; missed: " + strings.Join(s.Missed, "; ")
		}
		rows = append(rows, [2]string{"Step " + perSecond(s.Rate) + "/s", row})
	}
	if s := r.Search; s != nil {
		rows = append(rows, [2]string{"Max rate", s.line(len(r.Steps))})
	}
	if s := r.Server; s != nil && s.Error == "" {
		rows = append(rows, [2]string{"Server process", fmt.Sprintf("PID %d: %s CPU, %s per %s; resident %s before, %s after",
			s.PID, seconds(s.CPUSeconds), perOp(s.CPUPerOpNs), r.Unit, mib(s.RSSBefore), mib(s.RSSAfter))})
	}
	if r.Shard != "" {
		rows = append(rows, [2]string{"Shard", r.Shard + " on " + orDash(r.Host)})
	}
	for _, s := range r.Shards {
		rows = append(rows, [2]string{"Shard " + s.Shard, fmt.Sprintf("%s: %d conns, %.1f/s, p50 %s, p99 %s, %d errors, %d mismatches",
			orDash(s.Host), s.Conns, s.OpsPerSec, duration(s.P50), duration(s.P99), s.Errors, s.Mismatches)})
	}
	for _, m := range r.Missed {
		rows = append(rows, [2]string{"Threshold missed", m})
	}
	if r.Interrupted {
		rows = append(rows, [2]string{"Interrupted", "stopped before the end; figures cover the time measured"})
	}
	return rows
}

// compareRow is a run's figures side by side with other runs'.
func compareRow(r *Result) []string {
	rate := fmt.Sprintf("%.0f %ss/s", r.OpsPerSec, r.Unit)
	if r.Mode == Bulk {
		rate = fmt.Sprintf("%.1f MB/s", r.MBPerSec)
	}
	row := []string{rate, "-", "-", "-", "-"}
	if l := r.Latency; l != nil {
		row = []string{rate, duration(l.P50), duration(l.P99), duration(l.P999), duration(l.Max)}
	}
	return append(row, fmt.Sprint(r.Errors), fmt.Sprint(r.Mismatches))
}

// latencyOverTime draws one run's per-second percentiles as bands.
func latencyOverTime(run Labeled) *chart {
	c := &chart{
		title:  "Latency over time: " + run.Label,
		xLabel: "seconds", yLabel: "latency", logY: true,
		xFormat: func(v float64) string { return fmt.Sprintf("%g", v) },
		yFormat: nsLabel,
	}
	if len(run.Result.Shards) > 0 {
		c.title += " (each second: the worst shard's)"
	}
	names := []string{"p50", "p90", "p99", "p99.9", "max"}
	pts := make([][]point, len(names))
	for _, s := range run.Result.Series {
		l := s.Latency
		if l == nil {
			continue
		}
		for i, v := range []time.Duration{l.P50, l.P90, l.P99, l.P999, l.Max} {
			pts[i] = append(pts[i], point{s.At, float64(v)})
		}
	}
	for i := len(names) - 1; i >= 0; i-- {
		c.lines = append(c.lines, line{name: names[i], color: percentileColors[i], pts: pts[i]})
		if i > 0 && len(pts[i]) > 1 {
			c.bands = append(c.bands, band{color: percentileColors[i], low: pts[i-1], top: pts[i]})
		}
	}
	return c
}

// spectrum draws each run's latency at each percentile, as HdrHistogram's
// plotter does: percentiles spread on a log scale of 1/(1-p).
func spectrum(runs []Labeled) *chart {
	c := &chart{
		title:  "Latency by percentile",
		xLabel: "percentile", yLabel: "latency", logX: true, logY: true,
		xFormat: percentLabel,
		yFormat: nsLabel,
	}
	for i, run := range runs {
		if run.Result.Histogram == "" {
			continue
		}
		h, err := decodeHistogram(run.Result.Histogram)
		if err != nil {
			continue
		}
		var pts []point
		for _, b := range h.CumulativeDistributionWithTicks(hgrmTicks) {
			if b.Quantile >= 100 {
				continue
			}
			pts = append(pts, point{1 / (1 - b.Quantile/100), float64(b.ValueAt)})
		}
		c.lines = append(c.lines, line{name: run.Label, color: runColors[i%len(runColors)], pts: pts})
	}
	return c
}

// overTime draws one value per second for each run.
func overTime(runs []Labeled, title, yLabel string, value func(*Result, Second) float64, unit func(*Result) string) *chart {
	c := &chart{
		title: title, xLabel: "seconds", yLabel: yLabel,
		xFormat: func(v float64) string { return fmt.Sprintf("%g", v) },
		yFormat: func(v float64) string { return trimFloat(v) },
	}
	for i, run := range runs {
		var pts []point
		for _, s := range run.Result.Series {
			if v := value(run.Result, s); s.Seconds > 0 && !math.IsNaN(v) {
				pts = append(pts, point{s.At, v})
			}
		}
		if len(pts) == 0 {
			continue // a run without the figure, such as one without -pid
		}
		name := run.Label
		if len(runs) == 1 {
			name = unit(run.Result)
		}
		c.lines = append(c.lines, line{name: name, color: runColors[i%len(runColors)], pts: pts})
	}
	return c
}

// throughputUnit labels the throughput axis: the runs' unit if they share
// one.
func throughputUnit(runs []Labeled) string {
	unit := ""
	for _, run := range runs {
		u := run.Result.Unit + "s per second"
		if run.Result.Mode == Bulk {
			u = "MB per second each way"
		}
		if unit != "" && u != unit {
			return "per second"
		}
		unit = u
	}
	return unit
}

// nsLabel labels a latency axis given in nanoseconds.
func nsLabel(v float64) string {
	d := time.Duration(v)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%gns", v)
	case d < time.Millisecond:
		return fmt.Sprintf("%gµs", v/1e3)
	case d < time.Second:
		return fmt.Sprintf("%gms", v/1e6)
	}
	return fmt.Sprintf("%gs", v/1e9)
}

// percentLabel labels the spectrum's axis of 1/(1-p) with p: 10 is 90%,
// 1000 is 99.9%.
func percentLabel(v float64) string {
	decimals := max(0, int(math.Round(math.Log10(v)))-2)
	return fmt.Sprintf("%.*f%%", decimals, 100*(1-1/v))
}

// trimFloat prints v with at most three significant decimals, no trailing zeros.
func trimFloat(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return fmt.Sprintf("%gM", math.Round(v/1e5)/10)
	case math.Abs(v) >= 1e4:
		return fmt.Sprintf("%gk", math.Round(v/100)/10)
	}
	return fmt.Sprintf("%.4g", v)
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>echod bench report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1600px; padding: 0 1em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 1.2em 0 .4em; }
.meta { color: #666; margin: 0 0 1em; }
.grid2 { display: flex; flex-wrap: wrap; gap: 1em; }
figure.chart { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: .4em; flex: 1 1 520px; max-width: calc(50% - .5em); }
@media (max-width: 1100px) { figure.chart { max-width: none; } }
figcaption { font-weight: 600; margin: 0 0 .2em .3em; }
svg { width: 100%; height: auto; font: 11px system-ui, sans-serif; }
rect.plot { fill: #fafafa; stroke: #ccc; } line.grid { stroke: #e4e4e4; }
text.tick, text.legend { fill: #444; } text.label { fill: #666; }
path.line { fill: none; stroke-width: 1.8; stroke-linejoin: round; } path.band { opacity: .15; stroke: none; }
table { border-collapse: collapse; margin: .3em 0 1em; } td, th { text-align: left; padding: 2px 10px 2px 0; vertical-align: top; }
th { color: #555; font-weight: 600; white-space: nowrap; }
table.compare td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.compare th { border-bottom: 1px solid #ccc; }
.swatch { display: inline-block; width: .8em; height: .8em; border-radius: 2px; margin-right: .4em; vertical-align: baseline; }
.missed { color: #b00; } .nodata { color: #999; padding: 2em; }
</style></head>
<body>
<h1>echod bench report</h1>
<p class="meta">{{len .Runs}} run{{if ne (len .Runs) 1}}s{{end}}; written {{.Generated}}. Latency and percentiles from HdrHistogram (3 significant digits).</p>
{{if gt (len .Runs) 1}}<table class="compare"><tr><th>run</th><th>rate</th><th>p50</th><th>p99</th><th>p99.9</th><th>max</th><th>errors</th><th>mismatches</th></tr>
{{range .Runs}}<tr><td><span class="swatch" style="background: {{.Color}}"></span>{{.Label}}</td>{{range .Compare}}<td class="num">{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
{{range .Runs}}<h2><span class="swatch" style="background: {{.Color}}"></span>{{.Label}}</h2>
<table class="params">{{range .Summary}}<tr><th>{{index . 0}}</th><td{{if eq (index . 0) "Threshold missed"}} class="missed"{{end}}>{{index . 1}}</td></tr>
{{end}}</table>
{{end}}
<h2>Latency</h2>
<div class="grid2">{{.Spectrum}}{{range .Runs}}{{.Latency}}{{end}}</div>
<h2>Throughput and errors</h2>
<div class="grid2">{{.Throughput}}{{.Errors}}</div>
{{if .CPU}}<h2>Server</h2>
<div class="grid2">{{.CPU}}{{.Memory}}</div>{{end}}
</body></html>
`))
