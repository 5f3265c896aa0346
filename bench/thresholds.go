package bench

import (
	"fmt"
	"strings"
	"time"
)

// Thresholds are the limits a run must keep to pass, as a CI job states
// them. A zero field sets no limit, except MaxErrors: set it negative for
// none.
type Thresholds struct {
	MaxP50, MaxP99, MaxP999 time.Duration // latency percentiles
	MinRate                 float64       // Result.OpsPerSec, in the run's unit
	// MaxErrors, when not negative, is how many connection errors a run
	// may have and still pass (Verdict); negative, any fails it, as
	// Result.Err says. Mismatches always fail.
	MaxErrors int64
}

// Latency reports whether t limits a latency percentile.
func (t Thresholds) Latency() bool {
	return t.MaxP50 > 0 || t.MaxP99 > 0 || t.MaxP999 > 0
}

// Apply checks r against t and records in r.Missed, one line each, which
// limits it missed and by how much; it returns whether it missed any.
func (t Thresholds) Apply(r *Result) bool {
	r.Missed = nil
	miss := func(format string, args ...any) { r.Missed = append(r.Missed, fmt.Sprintf(format, args...)) }
	if t.Latency() && r.Latency == nil {
		miss("no latency was measured, so -max-p50/-max-p99/-max-p99.9 cannot be met")
	}
	if l := r.Latency; l != nil {
		for _, c := range []struct {
			name     string
			got, max time.Duration
		}{{"p50", l.P50, t.MaxP50}, {"p99", l.P99, t.MaxP99}, {"p99.9", l.P999, t.MaxP999}} {
			if c.max > 0 && c.got > c.max {
				miss("%s %s is over -max-%s %s by %s", c.name, duration(c.got), c.name, c.max, duration(c.got-c.max))
			}
		}
	}
	if t.MinRate > 0 && r.OpsPerSec < t.MinRate {
		miss("rate %.0f %ss/s is under -min-rate %.0f by %.0f (%.1f%%)",
			r.OpsPerSec, r.Unit, t.MinRate, t.MinRate-r.OpsPerSec, 100*(t.MinRate-r.OpsPerSec)/t.MinRate)
	}
	if t.MaxErrors >= 0 && r.Errors > t.MaxErrors {
		miss("%d connection %s, over -max-errors %d by %d", r.Errors, plural(r.Errors, "error", "errors"), t.MaxErrors, r.Errors-t.MaxErrors)
	}
	return len(r.Missed) > 0
}

// Verdict is the run's outcome for an exit status: nil if it passed.
// Mismatches, and an empty or broken run, fail it as Result.Err says;
// connection errors fail it beyond t.MaxErrors (any, if negative); and so
// does every threshold missed, each named in one line with by how much.
// It records the misses in r.Missed.
//
// A search's Result (FindMaxRate) was judged step by step instead: it fails
// only for mismatches, or when no rate met the thresholds.
func (r *Result) Verdict(t Thresholds) error {
	if s := r.Search; s != nil {
		if err := r.fault(false); err != nil && r.Mismatches > 0 {
			return err
		}
		if s.Rate == 0 && !r.Interrupted {
			return r.searchFailed(t)
		}
		return nil
	}
	t.Apply(r)
	err := r.Err()
	if t.MaxErrors >= 0 {
		// The error count is judged by the threshold instead.
		err = r.fault(false)
	}
	switch {
	case err != nil:
		return err
	case len(r.Missed) == 1:
		return fmt.Errorf("threshold missed: %s", r.Missed[0])
	case len(r.Missed) > 1:
		return fmt.Errorf("%d thresholds missed: %s", len(r.Missed), strings.Join(r.Missed, "; "))
	}
	return nil
}
