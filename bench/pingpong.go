package bench

import (
	"context"
	"io"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// pingpong sends one message at a time on c and waits for its echo: the
// round trip of each message is its latency. Every message is new bytes of
// the connection's stream, so a server that echoes stale data is caught.
func (r *runner) pingpong(ctx context.Context, w int, c conn, seed uint64) (int64, error) {
	size := int64(r.cfg.Size)
	msg := make([]byte, size)
	got := make([]byte, size)
	src := r.newStream(seed)
	var n int64
	for r.deadline(ctx, c) {
		src.Read(msg)
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return n, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return n, err
		}
		if i := pattern.FirstDiff(got, msg); i >= 0 {
			return n, r.mismatch(w, &pattern.Mismatch{Offset: n*size + int64(i), Got: got[i], Want: msg[i]})
		}
		r.complete(w, 1, time.Since(start))
		n++
	}
	return n, nil
}

// pipelined keeps up to Depth messages in flight on c: a writer sends a
// message whenever fewer are outstanding (or, with a Rate, when its
// scheduled time comes), while this goroutine reads and checks the echoes in
// order. A message's latency runs from its send time to the end of its echo,
// so it includes waiting behind the messages before it. With a Rate, the send
// time is the scheduled one, even when the writer was held back: a stall
// then shows in the latency of every message it delayed, not just one
// (this corrects for coordinated omission).
func (r *runner) pipelined(ctx context.Context, w int, c conn, seed uint64) (int64, error) {
	size := int64(r.cfg.Size)
	// sent holds the send time of each outstanding message; its capacity is
	// the depth, so the writer blocks while Depth messages are in flight.
	sent := make(chan time.Time, r.cfg.Depth)
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		msg := make([]byte, size)
		src := r.newStream(seed)
		pace := r.newPacer(w)
		for {
			src.Read(msg)
			at, ok := pace.next(stop)
			if !ok {
				wrote <- nil
				return
			}
			select {
			case sent <- at:
			case <-stop:
				wrote <- nil
				return
			}
			if _, err := c.Write(msg); err != nil {
				wrote <- err
				return
			}
		}
	}()

	n, err := r.readEchoes(ctx, w, c, seed, sent)
	close(stop)
	// Unblock a writer stuck on a server that stopped reading.
	c.SetWriteDeadline(aLongTimeAgo)
	werr := <-wrote
	if err == nil && ctx.Err() == nil {
		err = werr
	}
	return n, err
}

// pacer spaces one connection's messages to its share of Config.Rate.
type pacer struct {
	interval time.Duration // 0: no rate, send when the depth allows
	due      time.Time
	timer    *time.Timer
}

func (r *runner) newPacer(w int) *pacer {
	if r.cfg.Rate <= 0 {
		return &pacer{}
	}
	interval := time.Duration(float64(time.Second) * float64(r.cfg.Conns) / r.cfg.Rate)
	// Spread the connections' schedules over one interval.
	phase := interval * time.Duration(w) / time.Duration(r.cfg.Conns)
	return &pacer{interval: max(interval, 1), due: time.Now().Add(phase)}
}

// next waits for the next message's scheduled time and returns the time
// its latency counts from; without a rate it returns the time now at once.
// It returns false if stop closes.
//
// A writer that is behind its schedule (held back by the depth limit or by
// a server that stopped reading) sends at once and counts from the
// scheduled time, so the delay is measured. A writer that waited for its
// timer counts from when it woke: Go's timers fire up to a millisecond late,
// and that slack is the load generator's, not the server's.
func (p *pacer) next(stop <-chan struct{}) (time.Time, bool) {
	if p.interval == 0 {
		return time.Now(), true
	}
	at := p.due
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
		return time.Now(), true
	case <-stop:
		p.timer.Stop()
		return at, false
	}
}

// readEchoes reads and checks the echo of each message sent on c, in order.
func (r *runner) readEchoes(ctx context.Context, w int, c conn, seed uint64, sent <-chan time.Time) (int64, error) {
	size := int64(r.cfg.Size)
	want := make([]byte, size)
	got := make([]byte, size)
	src := r.newStream(seed)
	var n int64
	for {
		c.SetReadDeadline(time.Now().Add(r.cfg.Timeout))
		if ctx.Err() != nil {
			return n, nil
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return n, err
		}
		src.Read(want)
		if i := pattern.FirstDiff(got, want); i >= 0 {
			return n, r.mismatch(w, &pattern.Mismatch{Offset: n*size + int64(i), Got: got[i], Want: want[i]})
		}
		r.complete(w, 1, time.Since(<-sent))
		n++
	}
}
