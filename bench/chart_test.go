package bench

import (
	"fmt"
	"strings"
	"testing"
)

func TestChartScales(t *testing.T) {
	for raw, want := range map[float64]float64{0.3: 0.5, 1: 1, 7: 10, 1200: 2000, 0.011: 0.02} {
		if got := niceStep(raw); got != want {
			t.Errorf("niceStep(%v) = %v, want %v", raw, got, want)
		}
	}
	for v, want := range map[float64]string{1: "0%", 10: "90%", 100: "99%", 1000: "99.9%", 1e5: "99.999%"} {
		if got := percentLabel(v); got != want {
			t.Errorf("percentLabel(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{500: "500ns", 2e4: "20µs", 1.5e6: "1.5ms", 1e9: "1s"} {
		if got := nsLabel(v); got != want {
			t.Errorf("nsLabel(%v) = %q, want %q", v, got, want)
		}
	}
	a := newAxis([]float64{3e3, 4e5}, true, false)
	if a.lo != 1e3 || a.hi != 1e6 || fmt.Sprint(a.ticks) != "[1000 10000 100000 1e+06]" || a.pos(1e4) != 1.0/3 {
		t.Errorf("log axis %+v", a)
	}
	a = newAxis([]float64{12, 87}, false, true)
	if a.lo != 0 || a.hi != 100 || len(a.ticks) != 6 || a.pos(50) != 0.5 {
		t.Errorf("linear axis %+v", a)
	}
	// One value, or only zeros, still makes an axis with a range.
	if a := newAxis([]float64{0, 0}, false, true); a.hi <= a.lo {
		t.Errorf("axis of zeros %+v", a)
	}
}

// A chart with nothing to draw says so, rather than drawing empty axes; a
// point that a log scale cannot show is left out, not drawn at the edge.
func TestChartWithoutData(t *testing.T) {
	c := &chart{title: "t", logY: true, xFormat: trimFloat, yFormat: nsLabel,
		lines: []line{{name: "zeros", pts: []point{{1, 0}, {2, 0}}}}}
	if svg := string(c.svg()); !strings.Contains(svg, "no data") || strings.Contains(svg, "<path") {
		t.Errorf("chart of zeros on a log scale:\n%s", svg)
	}
	c.lines = append(c.lines, line{name: "some", pts: []point{{1, 10}, {2, 0}, {3, 100}}})
	if svg := string(c.svg()); !strings.Contains(svg, `data-series="some" data-points="2"`) {
		t.Errorf("chart:\n%s", svg)
	}
}
