package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// idleWorkers is how many goroutines open and check idle connections. Each
// may wait up to Timeout for a server that has stopped accepting, so there
// are many: connects themselves are bounded by maxDialing.
const idleWorkers = 4096

// runIdle opens Conns connections, proves each is served with a one-byte
// echo, holds them all open for the Duration without traffic, then checks
// each one again with another byte. With a PID it reports the server's
// resident memory before and after, and the growth per connection.
func (r *runner) runIdle(ctx context.Context) *Result {
	res := r.newResult()
	before := r.proc.sample()
	p := newProgress(r.cfg.Progress, r.ops.Load, r.idleLine)
	defer p.stop()
	r.measuring.Store(true)

	conns := make([]conn, r.cfg.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := time.Now()
	opening := make(chan struct{})
	go func() {
		defer close(opening)
		r.forEach(ctx, len(conns), func(i int) {
			c, err := r.dial(ctx, i)
			if err != nil {
				if ctx.Err() == nil {
					r.faults.add(err)
				}
				return
			}
			conns[i] = c
			t := time.Now()
			if err := r.echoByte(ctx, i, c, r.idleByte(i, 0)); err != nil {
				conns[i] = nil
				c.Close()
				return
			}
			r.complete(i, 1, time.Since(t))
		})
	}()
	p.wait(ctx, 0, opening) // progress while opening
	<-opening
	opened := r.ops.Load()
	openTime := time.Since(start)
	afterOpen := r.proc.sample()

	holdStart := time.Now()
	res.Interrupted = !p.wait(ctx, r.cfg.Duration, nil)
	hold := time.Since(holdStart)
	afterHold := r.proc.sample()

	var served atomic.Int64
	if !res.Interrupted {
		r.forEach(ctx, len(conns), func(i int) {
			if c := conns[i]; c != nil && r.echoByte(ctx, i, c, r.idleByte(i, 1)) == nil {
				served.Add(1)
			}
		})
	}

	r.measuring.Store(false)
	res.Duration = hold
	res.Seconds = hold.Seconds()
	res.Ops = opened
	res.Bytes = opened
	if openTime > 0 {
		res.OpsPerSec = float64(opened) / openTime.Seconds()
	}
	res.Latency = r.lat.summary()
	res.Idle = &IdleStats{
		Opened:      opened,
		OpenSeconds: openTime.Seconds(),
		Served:      served.Load(),
	}
	if r.proc != nil {
		res.Server = r.proc.report(before, afterHold, opened, int(opened))
		res.Server.RSSAfterOpen = afterOpen.rss
	}
	r.faults.fill(res)
	return res
}

// idleByte is the byte connection i echoes in its round-th check.
func (r *runner) idleByte(i, round int) byte {
	var b [2]byte
	r.newStream(seedFor(i, 0)).Read(b[:])
	return b[round]
}

// echoByte sends b on c and checks that it comes back, counting a failure.
func (r *runner) echoByte(ctx context.Context, w int, c conn, b byte) error {
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	defer stop()
	if !r.deadline(ctx, c) {
		return ctx.Err()
	}
	var got [1]byte
	_, err := c.Write([]byte{b})
	if err == nil {
		_, err = io.ReadFull(c, got[:])
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, errCounted) { // a WebSocket echo of the wrong shape
			r.faults.add(err)
		}
		return err
	}
	if got[0] != b {
		return r.mismatch(w, &pattern.Mismatch{Offset: 0, Got: got[0], Want: b})
	}
	return nil
}

// forEach calls fn(i) for each i below n from a few goroutines at once,
// until done or until ctx is done.
func (r *runner) forEach(ctx context.Context, n int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, idleWorkers) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		})
	}
	wg.Wait()
}

func (r *runner) idleLine(elapsed time.Duration, rate float64, total int64) string {
	return fmt.Sprintf("%6.1fs  %d of %d connections open and echoed  errors %d  mismatches %d",
		elapsed.Seconds(), total, r.cfg.Conns, r.faults.errors.Load(), r.faults.mismatches.Load())
}
