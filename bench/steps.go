package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// DefaultSearchSteps is how many steps FindMaxRate runs at most when not
// told.
const DefaultSearchSteps = 10

// searchPrecision ends a search once the highest rate that met the
// thresholds and the lowest that did not are this close (5%).
const searchPrecision = 1.05

// DefaultSearchStart is the rate, per second, a search starts from without
// Config.Rate.
const DefaultSearchStart = 1000

// runSteps runs cfg at each rate next gives, in turn, each step a run of
// its own (a warm-up, then cfg.Duration), until next says to stop or ctx
// is done, and adds the steps up into one Result with a row per step.
func runSteps(ctx context.Context, cfg Config, addr string, proc *process, next func(done []*Result) (float64, bool)) *Result {
	var done []*Result
	for ctx.Err() == nil {
		rate, ok := next(done)
		if !ok {
			break
		}
		c := cfg
		c.Rate, c.RampTo, c.Steps = rate, 0, nil
		res := runOnce(ctx, c, addr, proc)
		done = append(done, res)
		if res.Interrupted {
			break
		}
	}
	res := addSteps(cfg, done, ctx.Err() != nil)
	res.Hints = allHints(res, cfg, addr, proc)
	return res
}

// fixedSteps is runSteps' next for the rates given.
func fixedSteps(rates []float64) func([]*Result) (float64, bool) {
	return func(done []*Result) (float64, bool) {
		if len(done) == len(rates) {
			return 0, false
		}
		return rates[len(done)], true
	}
}

// addSteps adds the results of steps run one after the other into one:
// counts and durations add up, the latency histograms merge, and Steps has
// a row per step.
func addSteps(cfg Config, steps []*Result, interrupted bool) *Result {
	res := &Result{Mode: cfg.Mode, Addr: cfg.Addr, Conns: cfg.Conns, Depth: cfg.Depth, Size: cfg.Size, Unit: "message",
		Interrupted: interrupted, ErrorsByKind: map[string]int64{}}
	all, fromSend := newHistogram(), newHistogram()
	sched := &Schedule{Slack: behindSlack}
	for _, s := range steps {
		if res.Start.IsZero() {
			res.Start = s.Start
		}
		res.Ops += s.Ops
		res.Bytes += s.Bytes
		res.Seconds += s.Seconds
		res.Duration += s.Duration
		res.Errors += s.Errors
		for k, n := range s.ErrorsByKind {
			res.ErrorsByKind[k] += n
		}
		if res.FirstError == "" && s.FirstError != "" {
			res.FirstError = fmt.Sprintf("at %s: %s", describeRate(s.Rate, 0, nil), s.FirstError)
		}
		res.Mismatches += s.Mismatches
		if res.FirstMismatch == nil && s.FirstMismatch != nil {
			m := *s.FirstMismatch
			m.Text = fmt.Sprintf("at %s: %s", describeRate(s.Rate, 0, nil), m.Text)
			res.FirstMismatch = &m
		}
		res.Interrupted = res.Interrupted || s.Interrupted
		mergeEncoded(all, s.Histogram)
		row := Step{Rate: s.Rate, Seconds: s.Seconds, Ops: s.Ops, OpsPerSec: s.OpsPerSec, Latency: s.Latency,
			Errors: s.Errors, Mismatches: s.Mismatches, Missed: s.Missed, Histogram: s.Histogram}
		if sc := s.Schedule; sc != nil {
			sched.Behind += sc.Behind
			mergeEncoded(fromSend, sc.HistogramFromSend)
			row.LatencyFromSend, row.Behind, row.HistogramFromSend = sc.LatencyFromSend, sc.Behind, sc.HistogramFromSend
		}
		res.Steps = append(res.Steps, row)
		// The seconds go on from one step to the next, so that the
		// charts show the whole run.
		off := s.Start.Sub(res.Start).Seconds()
		for _, sec := range s.Series {
			sec.At += off
			res.Series = append(res.Series, sec)
		}
		res.Server = addServer(res.Server, s.Server)
	}
	if len(res.ErrorsByKind) == 0 {
		res.ErrorsByKind = nil
	}
	if res.Seconds > 0 {
		res.OpsPerSec = float64(res.Ops) / res.Seconds
		res.MBPerSec = float64(res.Bytes) / 1e6 / res.Seconds
	}
	if s := res.Server; s != nil && res.Ops > 0 {
		s.CPUPerOpNs = s.CPUSeconds * 1e9 / float64(res.Ops)
	}
	res.Latency, res.Histogram = summarize(all), encode(all)
	sched.LatencyFromSend, sched.HistogramFromSend = summarize(fromSend), encode(fromSend)
	res.Schedule = sched
	return res
}

// addServer adds one step's server figures to those of the steps before.
func addServer(sum, s *Server) *Server {
	switch {
	case s == nil:
		return sum
	case sum == nil:
		c := *s
		return &c
	}
	sum.CPUSeconds += s.CPUSeconds
	sum.RSSAfter = s.RSSAfter
	if sum.Error == "" {
		sum.Error = s.Error
	}
	return sum
}

// mergeEncoded adds the histogram encoded in s, if any, to h. A histogram
// this package encoded decodes.
func mergeEncoded(h *hdrhistogram.Histogram, s string) {
	if s == "" {
		return
	}
	if d, err := decodeHistogram(s); err == nil {
		h.Merge(d)
	}
}

// encode is h in Result.Histogram's encoding; "" for an empty h.
func encode(h *hdrhistogram.Histogram) string {
	if h.TotalCount() == 0 {
		return ""
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return string(b)
}

// FindMaxRate searches for the highest rate at which cfg's load meets the
// latency thresholds in th (and its -max-errors): starting from cfg.Rate
// (1000/s if 0), it doubles the rate while each step meets them, halves it
// while each misses, then bisects between the highest rate that met them
// and the lowest that did not until the two are within 5%. Each step is a
// run of its own (a warm-up, then cfg.Duration), and there are at most
// maxSteps of them (DefaultSearchSteps if 0). The Result adds the steps up,
// with a row per step; its Search says what was found.
func FindMaxRate(ctx context.Context, cfg Config, th Thresholds, maxSteps int) (*Result, error) {
	if cfg.RampTo > 0 || len(cfg.Steps) > 0 {
		return nil, errors.New("a search finds the rate itself: give it a single rate to start from, not a ramp or steps")
	}
	if !th.Latency() {
		return nil, errors.New("a search needs a latency to stay within, such as a p99")
	}
	if th.MinRate > 0 {
		return nil, errors.New("a search finds the rate itself; a minimum rate does not apply")
	}
	if cfg.Count > 0 {
		return nil, errors.New("a search runs each step for the duration; count does not apply")
	}
	if maxSteps == 0 {
		maxSteps = DefaultSearchSteps
	}
	if maxSteps < 1 || maxSteps > 100 {
		return nil, fmt.Errorf("a search runs between 1 and 100 steps, not %d", maxSteps)
	}
	start := cfg.Rate
	if start == 0 {
		start = DefaultSearchStart
	}
	cfg.Rate = start
	cfg, addr, proc, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.StartAt.IsZero() && !waitUntil(ctx, cfg.StartAt) {
		res := newRunner(cfg, addr, proc).newResult()
		res.Interrupted = true
		return res, nil
	}
	// Below one message per connection in a step, there is nothing to
	// measure.
	floor := float64(cfg.Conns) / cfg.Duration.Seconds()
	s := &search{th: th, start: start, max: maxSteps, floor: floor}
	res := runSteps(ctx, cfg, addr, proc, s.next)
	res.Search = &RateSearch{Rate: s.lo, Over: s.hi, Thresholds: th.String()}
	res.Rate = 0
	return res, nil
}

// search is FindMaxRate's state: the highest rate that met the thresholds
// and the lowest that did not, 0 for none yet.
type search struct {
	th           Thresholds
	start, floor float64 // the first rate, and the lowest worth trying
	max          int
	lo, hi       float64
}

// next judges the last step and picks the next rate, if any.
func (s *search) next(done []*Result) (float64, bool) {
	if len(done) == 0 {
		return s.start, true
	}
	last := done[len(done)-1]
	if last.Mismatches > 0 {
		// A server that corrupts echoes has no rate worth finding.
		last.Verdict(s.th)
		return 0, false
	}
	switch err := last.Verdict(s.th); {
	case err == nil:
		s.lo = max(s.lo, last.Rate)
	default:
		if len(last.Missed) == 0 {
			// Not a threshold but a failure, such as errors.
			last.Missed = []string{err.Error()}
		}
		if s.hi == 0 || last.Rate < s.hi {
			s.hi = last.Rate
		}
	}
	if len(done) >= s.max {
		return 0, false
	}
	switch {
	case s.hi == 0:
		return min(2*s.lo, MaxRate), s.lo < MaxRate
	case s.lo == 0:
		return s.hi / 2, s.hi/2 >= s.floor
	case s.hi/s.lo <= searchPrecision:
		return 0, false
	}
	return (s.lo + s.hi) / 2, true
}

// String names the limits t sets, such as "p99 5ms and 0 errors".
func (t Thresholds) String() string {
	var parts []string
	for _, c := range []struct {
		name string
		max  time.Duration
	}{{"p50", t.MaxP50}, {"p99", t.MaxP99}, {"p99.9", t.MaxP999}} {
		if c.max > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", c.name, c.max))
		}
	}
	if t.MinRate > 0 {
		parts = append(parts, fmt.Sprintf("at least %.0f/s", t.MinRate))
	}
	if t.MaxErrors >= 0 {
		parts = append(parts, fmt.Sprintf("at most %d errors", t.MaxErrors))
	} else {
		parts = append(parts, "no errors")
	}
	return strings.Join(parts, ", ")
}

// searchFailed says why a search within t found no rate: what the lowest
// rate it tried missed, and whether the cause was this load generator's
// own lateness rather than the server.
func (r *Result) searchFailed(t Thresholds) error {
	var low *Step
	for i := range r.Steps {
		if s := &r.Steps[i]; low == nil || s.Rate < low.Rate {
			low = s
		}
	}
	if low == nil {
		return fmt.Errorf("no rate was tried")
	}
	why := "it failed"
	if len(low.Missed) > 0 {
		why = strings.Join(low.Missed, "; ")
	} else if r.FirstError != "" {
		why = r.FirstError
	}
	if l := low.LatencyFromSend; l != nil && t.MaxP99 > 0 && low.Latency != nil && low.Latency.P99 > t.MaxP99 && l.P99 <= t.MaxP99 {
		why += fmt.Sprintf(" (from the actual send its p99 was %s, within the bound: %d %s sent behind schedule, so the delay was mostly in sending; is this machine too busy to keep the schedule?)",
			duration(l.P99), low.Behind, plural(low.Behind, "message was", "messages were"))
	}
	return fmt.Errorf("no rate tried kept within %s: the lowest, %s, missed: %s", r.Search.Thresholds, describeRate(low.Rate, 0, nil), why)
}
