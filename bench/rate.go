package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// MaxRate bounds a scheduled rate, so that a typo cannot ask for a
// schedule no machine keeps.
const MaxRate = 1e9

// HeaderSize is the bytes at the start of each message sent on a schedule
// (Config.Rate): its sequence number on its connection, then its scheduled
// send time in nanoseconds since the run started, both big-endian. The
// pattern bytes follow, and the reader checks both, so a server that drops,
// repeats or reorders messages is caught and the message named.
const HeaderSize = 16

// behindSlack is how much later than scheduled a message may be sent and
// still count as on schedule. Go's timers on Linux wake up to a millisecond
// late (epoll waits in whole milliseconds), so a writer that slept for its
// turn is often most of a millisecond late: that is the timer's rounding,
// not a load generator falling behind.
const behindSlack = 2 * time.Millisecond

// ParseRate parses what -rate takes: a rate ("5000"), a ramp from one rate
// to another over the run ("1000:10000"), or steps run one after another
// ("1000,2000,4000"). It returns Config's Rate, RampTo and Steps; a plain
// "0" means no rate.
func ParseRate(s string) (rate, rampTo float64, steps []float64, err error) {
	one := func(v string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		switch {
		case err != nil || math.IsNaN(f):
			return 0, fmt.Errorf("invalid rate %q: want N, FROM:TO (a ramp) or N,N,... (steps), such as 1000:10000", s)
		case f <= 0 || f > MaxRate:
			return 0, fmt.Errorf("invalid rate %q: each rate must be above 0 and at most %.0f messages per second", s, float64(MaxRate))
		}
		return f, nil
	}
	switch {
	case strings.Contains(s, ":"):
		from, to, _ := strings.Cut(s, ":")
		if rate, err = one(from); err != nil {
			return 0, 0, nil, err
		}
		if rampTo, err = one(to); err != nil {
			return 0, 0, nil, err
		}
		return rate, rampTo, nil, nil
	case strings.Contains(s, ","):
		for _, v := range strings.Split(s, ",") {
			f, err := one(v)
			if err != nil {
				return 0, 0, nil, err
			}
			steps = append(steps, f)
		}
		return 0, 0, steps, nil
	}
	if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil && f == 0 {
		return 0, 0, nil, nil
	}
	rate, err = one(s)
	return rate, 0, nil, err
}

// scheduled reports whether c sends on a schedule: a rate, a ramp or steps.
func (c Config) scheduled() bool { return c.Rate > 0 || len(c.Steps) > 0 }

// validateRate reports what is wrong with c's rate, ramp or steps.
func (c Config) validateRate() error {
	switch {
	case !(c.Rate >= 0 && c.RampTo >= 0): // also refuses NaN
		return fmt.Errorf("rate must not be negative, got %v", min(c.Rate, c.RampTo))
	case c.Rate > MaxRate || c.RampTo > MaxRate:
		return fmt.Errorf("rate must be at most %.0f per second", float64(MaxRate))
	case c.RampTo > 0 && c.Rate == 0:
		return fmt.Errorf("a ramp needs a rate to start from")
	case len(c.Steps) > 0 && (c.Rate > 0 || c.RampTo > 0):
		return fmt.Errorf("steps and a rate or ramp exclude one another")
	case !c.scheduled():
		return nil
	case c.Mode != PingPong:
		return fmt.Errorf("rate applies to pingpong only, not %s", c.Mode)
	case c.Size < HeaderSize:
		return fmt.Errorf("with a rate, size must be at least %d bytes (each message carries its sequence number and scheduled time), got %d", HeaderSize, c.Size)
	case c.textPayload():
		return fmt.Errorf("with a rate, WebSocket messages must be binary: each carries its sequence number and scheduled time in binary, which a text message may not hold")
	case (c.RampTo > 0 || len(c.Steps) > 0) && c.Count > 0:
		return fmt.Errorf("a ramp or steps run for the duration; count does not apply")
	case (c.RampTo > 0 || len(c.Steps) > 0) && c.Duration == 0:
		return fmt.Errorf("a ramp or steps run for the duration; give one")
	}
	lowest := c.Rate
	if c.RampTo > 0 {
		lowest = (c.Rate + c.RampTo) / 2
	}
	for _, s := range c.Steps {
		if !(s > 0 && s <= MaxRate) {
			return fmt.Errorf("each step's rate must be above 0 and at most %.0f per second, got %v", float64(MaxRate), s)
		}
		if lowest == 0 || s < lowest {
			lowest = s
		}
	}
	if c.Duration > 0 && lowest*c.Duration.Seconds() < float64(c.Conns) {
		return fmt.Errorf("a rate of %s/s over %v schedules less than one message per connection (%d): raise the rate or the duration, or use fewer connections", perSecond(lowest), c.Duration, c.Conns)
	}
	return nil
}

// describeRate says what a rate is, for the report: "5000/s", "1000/s
// ramping to 10000/s" or "steps of 1000, 2000/s".
func describeRate(rate, rampTo float64, steps []float64) string {
	switch {
	case len(steps) > 0:
		s := make([]string, len(steps))
		for i, r := range steps {
			s[i] = perSecond(r)
		}
		return "steps of " + strings.Join(s, ", ") + "/s"
	case rampTo > 0:
		return perSecond(rate) + "/s ramping to " + perSecond(rampTo) + "/s"
	}
	return perSecond(rate) + "/s"
}

// perSecond prints a rate: whole above 100, with three significant digits
// below, where a search's halvings leave fractions (62.5, 15.6).
func perSecond(r float64) string {
	if r >= 100 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return strconv.FormatFloat(r, 'g', 3, 64)
}

// putHeader writes a scheduled message's header into b.
func putHeader(b []byte, seq uint64, at time.Duration) {
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint64(b[8:], uint64(at))
}

// sendRecord is what the writer of a connection tells its reader about
// each message: the header it carried and when it was written.
type sendRecord struct {
	seq  uint64
	due  time.Time // scheduled: the latency counts from here
	sent time.Time // when the write began
}

// headerMismatch describes an echo whose header is not the one due: the
// server dropped, repeated or reordered messages, or changed the header.
func headerMismatch(got []byte, want sendRecord, epoch time.Time, m *pattern.Mismatch) error {
	gotSeq := binary.BigEndian.Uint64(got)
	gotAt := time.Duration(binary.BigEndian.Uint64(got[8:]))
	wantAt := want.due.Sub(epoch)
	switch {
	case gotSeq != want.seq && gotSeq < want.seq+1<<32:
		return fmt.Errorf("message %d came back where message %d was due (the server dropped, repeated or reordered messages): %w", gotSeq, want.seq, m)
	case gotSeq == want.seq && gotAt != wantAt:
		return fmt.Errorf("message %d came back with its send time changed from %v to %v: %w", want.seq, wantAt, gotAt, m)
	}
	return fmt.Errorf("message %d's header came back changed: %w", want.seq, m)
}

// schedule is what a run on a schedule measures beside its latencies from
// the scheduled send times: the latencies from the actual sends, and how
// many messages were sent behind schedule.
type schedule struct {
	fromSend *latencies
	behind   atomic.Int64
}

// completeScheduled counts a scheduled message of worker w whose echo was
// verified at now.
func (r *runner) completeScheduled(w int, s sendRecord, now time.Time) {
	if r.measuring.Load() {
		r.sched.fromSend.record(w, now.Sub(s.sent))
		if s.sent.Sub(s.due) > behindSlack {
			r.sched.behind.Add(1)
		}
	}
	r.complete(w, 1, now.Sub(s.due))
}

// fill adds what s measured to res.
func (s *schedule) fill(res *Result) {
	res.Schedule = &Schedule{Behind: s.behind.Load(), Slack: behindSlack, LatencyFromSend: s.fromSend.summary()}
	// As for Result.Histogram, encoding cannot fail.
	res.Schedule.HistogramFromSend, _ = s.fromSend.encoded()
}

// pacer spaces one connection's messages to its share of Config.Rate, or
// of a ramp's rate at the time.
type pacer struct {
	interval time.Duration // 0: no rate, send when the depth allows
	due      time.Time
	timer    *time.Timer

	// A ramp's per-connection rate goes from from to to over length,
	// starting at start.
	start      time.Time
	length     time.Duration
	from, to   float64
	rampActive bool
}

func (r *runner) newPacer(w int) *pacer {
	if r.cfg.Rate <= 0 {
		return &pacer{}
	}
	conns := float64(r.cfg.Conns)
	p := &pacer{interval: perConn(r.cfg.Rate, conns)}
	if r.cfg.RampTo > 0 {
		// The ramp spans the measured window, which opens after the
		// warm-up; the warm-up runs at the starting rate.
		p.rampActive = true
		p.start = r.epoch.Add(r.cfg.Warmup)
		p.length = r.cfg.Duration
		p.from, p.to = r.cfg.Rate/conns, r.cfg.RampTo/conns
	}
	// Spread the connections' schedules over one interval. The schedule
	// starts when the connection does: a reconnect restarts it rather
	// than send the time lost in a burst.
	p.due = time.Now().Add(p.interval * time.Duration(w) / time.Duration(r.cfg.Conns))
	return p
}

// perConn is the interval between one connection's messages at rate in
// all over conns connections.
func perConn(rate, conns float64) time.Duration {
	return max(time.Duration(float64(time.Second)*conns/rate), 1)
}

// rateAt is a ramp's per-connection rate at t.
func (p *pacer) rateAt(t time.Time) float64 {
	f := float64(t.Sub(p.start)) / float64(p.length)
	f = min(max(f, 0), 1)
	return p.from + (p.to-p.from)*f
}

// next waits for the next message's scheduled time and returns it; without
// a rate it returns at once, with no time (the latency then counts from
// the actual send). It returns false if stop closes.
// A writer that is behind its schedule (held back by the depth limit, by a
// server that stopped reading, or by its own machine) sends at once: its
// latency still counts from the scheduled time, so the delay is measured
// (this corrects for coordinated omission).
func (p *pacer) next(stop <-chan struct{}) (time.Time, bool) {
	if p.interval == 0 {
		return time.Time{}, true
	}
	at := p.due
	if p.rampActive {
		p.interval = max(time.Duration(float64(time.Second)/p.rateAt(at)), 1)
	}
	p.due = p.due.Add(p.interval)
	d := time.Until(at)
	if d <= 0 {
		return at, true
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return at, true
	case <-stop:
		p.timer.Stop()
		return at, false
	}
}
