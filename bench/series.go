package bench

import "time"

// Second is what one second of the measured window saw: the time series
// behind the HTML report's charts and the progress line.
type Second struct {
	At         float64  `json:"at"`      // seconds from the opening of the measured window to the end of this second
	Seconds    float64  `json:"seconds"` // its length: about 1, the last one may be shorter
	Ops        int64    `json:"ops"`     // completed in it, in the Result's unit
	Errors     int64    `json:"errors"`
	Mismatches int64    `json:"mismatches"`
	Latency    *Latency `json:"latency,omitempty"` // of what completed in it

	// With Config.PID: the server's CPU time in this second and its
	// resident memory at the end of it.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	RSS        int64   `json:"rss,omitempty"`
}

// sampler cuts the measured window into seconds. Its tick runs on the
// goroutine that measures, never on the workers' path.
type sampler struct {
	r      *runner
	t0     time.Time
	last   time.Time
	ops    int64 // the runner's counts at last
	errs   int64
	mism   int64
	cpu    procSample
	series []Second
}

func newSampler(r *runner, t0 time.Time, proc procSample) *sampler {
	return &sampler{
		r: r, t0: t0, last: t0, cpu: proc,
		ops:  r.ops.Load(),
		errs: r.faults.errors.Load(),
		mism: r.faults.mismatches.Load(),
	}
}

// tick closes the second that ends at now.
func (s *sampler) tick(now time.Time) {
	s.close(now, s.r.ops.Load(), s.r.proc.sample())
}

// close closes the second that ends at now, when the runner had completed
// ops and the server's counters read proc.
func (s *sampler) close(now time.Time, ops int64, proc procSample) {
	errs, mism := s.r.faults.errors.Load(), s.r.faults.mismatches.Load()
	sec := Second{
		At:         now.Sub(s.t0).Seconds(),
		Seconds:    now.Sub(s.last).Seconds(),
		Ops:        ops - s.ops,
		Errors:     errs - s.errs,
		Mismatches: mism - s.mism,
		Latency:    s.r.lat.flush(),
	}
	if s.r.proc != nil {
		if proc.err == nil && s.cpu.err == nil {
			sec.CPUSeconds = (proc.cpu - s.cpu.cpu).Seconds()
			sec.RSS = proc.rss
		}
		s.cpu = proc
	}
	s.last, s.ops, s.errs, s.mism = now, ops, errs, mism
	s.series = append(s.series, sec)
}

// latest is the last second closed, or nil before the first.
func (s *sampler) latest() *Second {
	if s == nil || len(s.series) == 0 {
		return nil
	}
	return &s.series[len(s.series)-1]
}
