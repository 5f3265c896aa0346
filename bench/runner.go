package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// aLongTimeAgo is a deadline in the past: setting it unblocks every read and
// write on a connection at once.
var aLongTimeAgo = time.Unix(1, 0)

// maxDialing bounds the connects in progress at once, so thousands of
// connections do not overflow the server's accept queue in one burst.
const maxDialing = 256

// runner holds the state that one run's workers share.
type runner struct {
	cfg  Config
	addr string // cfg.Addr, resolved once
	proc *process
	lat  *latencies
	// sched is what a run on a schedule measures besides lat (nil
	// without a rate); epoch is when the run started, which the
	// scheduled send times in the messages count from.
	sched *schedule
	epoch time.Time

	// ops counts completed messages, sessions or (Bulk) bytes over the
	// whole run, warm-up included; unitBytes is the verified echo per op.
	ops       atomic.Int64
	unitBytes int64
	measuring atomic.Bool  // set for the measured window only
	opsAtOpen atomic.Int64 // ops when the measured window opened
	countDone chan struct{}
	finish    sync.Once
	countAt   time.Time // when Count was reached; read after countDone is closed

	faults faults
	udp    udpCounts
	series *sampler // the measured window's seconds; set and read by measure's goroutine only

	bulkPattern []byte        // Bulk: shared by every connection, read-only
	dialing     chan struct{} // a semaphore of maxDialing
	wsConns     atomic.Int64  // WebSocket connections opened
}

func newRunner(cfg Config, addr string, proc *process) *runner {
	unit := int64(cfg.Size)
	var bulk []byte
	if cfg.Mode == Bulk {
		unit = 1
		bulk = newBulkPattern(max(cfg.Size, bulkRead), cfg.textPayload())
	}
	var sched *schedule
	if cfg.Rate > 0 {
		sched = &schedule{fromSend: newLatencies()}
	}
	return &runner{
		sched:       sched,
		bulkPattern: bulk,
		cfg:         cfg,
		addr:        addr,
		proc:        proc,
		lat:         newLatencies(),
		unitBytes:   unit,
		countDone:   make(chan struct{}),
		faults:      faults{byKind: map[string]int64{}},
		dialing:     make(chan struct{}, maxDialing),
	}
}

// complete counts units finished by worker w (1 message or session, or n
// bytes in Bulk) and, when latency is not negative, records it.
func (r *runner) complete(w int, units int64, latency time.Duration) {
	total := r.ops.Add(units)
	if !r.measuring.Load() {
		return
	}
	if latency >= 0 {
		r.lat.record(w, latency)
	}
	if r.cfg.Count > 0 && total-r.opsAtOpen.Load() >= r.cfg.Count {
		r.finish.Do(func() {
			r.countAt = time.Now()
			close(r.countDone)
		})
	}
}

// errCounted is returned by a session whose failure has already been counted
// (as a mismatch), so the loop does not count it again as an error.
var errCounted = errors.New("counted")

// mismatch records a reply on worker w's connection that differs from what
// was sent, and returns errCounted.
func (r *runner) mismatch(w int, err error) error {
	r.faults.addMismatch(w, err)
	return errCounted
}

// dial connects to the server from the next source address, if any, over
// the run's transport.
func (r *runner) dial(ctx context.Context, w int) (conn, error) {
	select {
	case r.dialing <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.dialing }()
	d := net.Dialer{Timeout: r.cfg.Timeout}
	if n := len(r.cfg.Sources); n > 0 {
		d.LocalAddr = &net.TCPAddr{IP: r.cfg.Sources[w%n].AsSlice()}
		d.Control = bindAddressNoPort
	}
	c, err := d.DialContext(ctx, "tcp", r.addr)
	if err != nil {
		return nil, &connectError{err: err}
	}
	return r.over(ctx, w, c.(*net.TCPConn))
}

// session is what a connection does in one mode until it fails or ctx is
// done; it returns how many operations it completed.
type session func(ctx context.Context, w int, c conn, seed uint64) (int64, error)

// connLoop runs s on a connection for worker w until ctx is done,
// reconnecting after each failure with a back-off.
func (r *runner) connLoop(ctx context.Context, w int, s session) {
	var backoff time.Duration
	for gen := uint64(0); ctx.Err() == nil; gen++ {
		var ops int64
		c, err := r.dial(ctx, w)
		if err == nil {
			// Cancellation unblocks the session wherever it waits.
			stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
			ops, err = s(ctx, w, c, seedFor(w, gen))
			stop()
			c.Close()
		}
		if ctx.Err() != nil {
			return
		}
		if !errors.Is(err, errCounted) {
			r.faults.add(err)
		}
		if ops > 0 && !errors.Is(err, errCounted) {
			backoff = 0
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
		sleep(ctx, backoff)
	}
}

// seedFor gives each connection of each worker its own payload stream.
func seedFor(w int, gen uint64) uint64 {
	return uint64(w+1)<<32 ^ gen*0x9e3779b97f4a7c15
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// deadline sets c's deadline for the next exchange and reports whether ctx is
// still live. The check comes after the set, so that a cancellation, whose
// deadline in the past the set may have just replaced, is not missed.
func (r *runner) deadline(ctx context.Context, c net.Conn) bool {
	c.SetDeadline(time.Now().Add(r.cfg.Timeout))
	return ctx.Err() == nil
}

// runLoad runs the modes that measure a rate: one worker per connection
// (socket for UDP) for the warm-up and the measured window.
func (r *runner) runLoad(parent context.Context) *Result {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	r.epoch = time.Now()
	var wg sync.WaitGroup
	for w := range r.cfg.Conns {
		wg.Go(func() { r.worker(ctx, w) })
	}
	res := r.measure(parent)
	cancel()
	wg.Wait()
	r.faults.fill(res)
	if r.cfg.Mode == UDP {
		res.UDP = &UDPStats{Sent: r.udp.sent.Load(), Lost: r.udp.lost.Load(), Late: r.udp.late.Load()}
	}
	return res
}

func (r *runner) worker(ctx context.Context, w int) {
	switch r.cfg.Mode {
	case PingPong:
		if r.cfg.Depth == 1 && r.cfg.Rate == 0 {
			r.connLoop(ctx, w, r.pingpong)
		} else {
			r.connLoop(ctx, w, r.pipelined)
		}
	case Bulk:
		r.connLoop(ctx, w, r.bulk)
	case Cycle:
		r.cycleLoop(ctx, w)
	case UDP:
		r.udpLoop(ctx, w)
	}
}

// measure waits out the warm-up, then measures until the duration or count
// is reached or parent is done, printing progress meanwhile.
func (r *runner) measure(parent context.Context) *Result {
	res := r.newResult()
	p := newProgress(r.cfg.Progress, r.ops.Load, r.progressLine)
	defer p.stop()

	if !p.wait(parent, r.cfg.Warmup, nil) {
		res.Interrupted = true
		return res
	}
	before := r.proc.sample()
	ops0 := r.ops.Load()
	r.opsAtOpen.Store(ops0)
	r.measuring.Store(true)
	t0 := time.Now()
	r.series = newSampler(r, t0, before)
	p.every = r.series.tick
	res.Interrupted = !p.wait(parent, r.cfg.Duration, r.countDone)
	r.measuring.Store(false)
	elapsed := time.Since(t0)
	ops := r.ops.Load() - ops0
	after := r.proc.sample()
	if end := t0.Add(elapsed); end.Sub(r.series.last) >= 10*time.Millisecond || len(r.series.series) == 0 {
		r.series.close(end, ops0+ops, after)
	} else {
		// Too short to be a second of its own: what completed since the
		// last tick joins the last second, so that the seconds add up.
		r.series.latest().Ops += ops0 + ops - r.series.ops
		r.series.ops = ops0 + ops
	}
	select {
	case <-r.countDone:
		// Other workers may finish a few more before they notice; the
		// figures stop at the count.
		elapsed, ops = r.countAt.Sub(t0), r.cfg.Count
	default:
	}

	res.Duration = elapsed
	res.Seconds = elapsed.Seconds()
	res.Ops = ops
	res.Bytes = ops * r.unitBytes
	if elapsed > 0 {
		res.OpsPerSec = float64(ops) / elapsed.Seconds()
		res.MBPerSec = float64(res.Bytes) / 1e6 / elapsed.Seconds()
	}
	res.Start = t0.UTC()
	res.Series = r.series.series
	res.Latency = r.lat.summary()
	if r.proc != nil {
		res.Server = r.proc.report(before, after, ops, 0)
	}
	return res
}

// progressLine describes the run so far for the progress display.
func (r *runner) progressLine(elapsed time.Duration, rate float64, _ int64) string {
	unit := r.opUnit() + "s/s"
	if r.cfg.Mode == Bulk {
		rate /= 1e6
		unit = "MB/s"
	}
	phase := ""
	if r.cfg.Rate > 0 {
		phase = " at " + describeRate(r.cfg.Rate, r.cfg.RampTo, nil)
	}
	if !r.measuring.Load() {
		phase += " (warm-up)"
	}
	lat := ""
	if s := r.series.latest(); s != nil && s.Latency != nil {
		lat = fmt.Sprintf("  p50 %s p99 %s", duration(s.Latency.P50), duration(s.Latency.P99))
	}
	return fmt.Sprintf("%6.1fs%s  %12.0f %s%s  errors %d  mismatches %d",
		elapsed.Seconds(), phase, rate, unit, lat, r.faults.errors.Load(), r.faults.mismatches.Load())
}

func (r *runner) opUnit() string {
	switch r.cfg.Mode {
	case Bulk:
		return "byte"
	case Cycle:
		return "session"
	case Idle:
		return "connection"
	case UDP:
		return "datagram"
	default:
		return "message"
	}
}

func (r *runner) newResult() *Result {
	res := &Result{
		Mode:   r.cfg.Mode,
		Addr:   r.cfg.Addr,
		Conns:  r.cfg.Conns,
		Depth:  r.cfg.Depth,
		Size:   r.cfg.Size,
		Unit:   r.opUnit(),
		Rate:   r.cfg.Rate,
		RampTo: r.cfg.RampTo,
		URL:    r.cfg.url(),
	}
	if r.cfg.webSocket() {
		res.MessageType = r.cfg.MessageType
	}
	return res
}

// progress prints a self-rewriting line about once a second to a terminal.
type progress struct {
	w     io.Writer
	ops   func() int64
	line  func(elapsed time.Duration, rate float64, total int64) string
	start time.Time
	last  time.Time
	n     int64 // ops at last
	shown bool
	every func(now time.Time) // when set, called each second before the line is shown
}

func newProgress(w io.Writer, ops func() int64, line func(time.Duration, float64, int64) string) *progress {
	now := time.Now()
	return &progress{w: w, ops: ops, line: line, start: now, last: now, n: ops()}
}

// wait waits for d (0: no limit), done to be closed, or ctx to be done,
// whichever comes first, updating the progress line each second. It
// returns false if ctx ended the wait.
func (p *progress) wait(ctx context.Context, d time.Duration, done <-chan struct{}) bool {
	var limit <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		limit = t.C
	} else if done == nil {
		return ctx.Err() == nil
	}
	var tick <-chan time.Time
	if p.w != nil || p.every != nil {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-limit:
			return true
		case <-done:
			return true
		case <-ctx.Done():
			return false
		case now := <-tick:
			if p.every != nil {
				p.every(now)
			}
			if p.w != nil {
				p.show()
			}
		}
	}
}

func (p *progress) show() {
	now, n := time.Now(), p.ops()
	rate := float64(n-p.n) / now.Sub(p.last).Seconds()
	p.last, p.n = now, n
	p.shown = true
	fmt.Fprintf(p.w, "\r\x1b[K%s", p.line(now.Sub(p.start), rate, n))
}

// stop clears the progress line, so the report starts on a clean line.
func (p *progress) stop() {
	if p.w != nil && p.shown {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
