package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// inlineWrite is the largest session payload written before reading: the
// socket buffers take it whole, so the write cannot wait on the echo.
const inlineWrite = 64 << 10

// cycleLoop runs short sessions one after another for worker w, the way the
// Protohackers checker does: connect, send Size bytes, half-close, read to
// EOF, close. A session's latency runs from the connect to the EOF.
func (r *runner) cycleLoop(ctx context.Context, w int) {
	payload := make([]byte, r.cfg.Size)
	buf := make([]byte, min(r.cfg.Size, 64<<10)+1)
	var backoff time.Duration
	for s := uint64(0); ctx.Err() == nil; s++ {
		r.newStream(seedFor(w, s)).Read(payload)
		start := time.Now()
		err := r.cycle(ctx, w, payload, buf)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			r.complete(w, 1, time.Since(start))
			backoff = 0
			continue
		}
		if err != errCounted {
			r.faults.add(err)
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
		sleep(ctx, backoff)
	}
}

// cycle runs one session and checks that the reply is exactly payload.
func (r *runner) cycle(ctx context.Context, w int, payload, buf []byte) error {
	c, err := r.dial(ctx, w)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	defer stop()
	if !r.deadline(ctx, c) {
		return ctx.Err()
	}

	wrote := make(chan error, 1)
	send := func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		wrote <- err
	}
	if len(payload) <= inlineWrite {
		send()
	} else {
		go send()
	}

	got := 0
	var rerr error
	for {
		n, err := c.Read(buf)
		if n > 0 {
			end := min(got+n, len(payload))
			if i := pattern.FirstDiff(buf[:end-got], payload[got:end]); i >= 0 {
				rerr = r.mismatch(w, &pattern.Mismatch{Offset: int64(got + i), Got: buf[i], Want: payload[got+i]})
				break
			}
			if got+n > len(payload) {
				rerr = r.mismatch(w, fmt.Errorf("%w: at least %d bytes more than the %d sent", pattern.ErrTooLong, got+n-len(payload), len(payload)))
				break
			}
			got += n
		}
		if err == io.EOF {
			if got < len(payload) {
				rerr = r.mismatch(w, fmt.Errorf("reply ended after %d of the %d bytes sent", got, len(payload)))
			}
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	if rerr != nil {
		c.SetDeadline(aLongTimeAgo) // unblocks a writer still sending
	}
	werr := <-wrote
	if rerr != nil {
		return rerr
	}
	return werr
}
