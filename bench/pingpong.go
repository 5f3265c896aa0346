package bench

import (
	"context"
	"fmt"
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
// order. A message's latency runs from its send to the end of its echo,
// so it includes waiting behind the messages before it. With a Rate it runs
// from the scheduled time, even when the writer was held back: a stall then
// shows in the latency of every message it delayed, not just one (this
// corrects for coordinated omission); the latency from the actual send is
// measured beside it.
func (r *runner) pipelined(ctx context.Context, w int, c conn, seed uint64) (int64, error) {
	size := int64(r.cfg.Size)
	// credit holds a token for each outstanding message: the writer blocks
	// while Depth messages are in flight, and sent, as large, never does.
	credit := make(chan struct{}, r.cfg.Depth)
	sent := make(chan sendRecord, r.cfg.Depth)
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		msg := make([]byte, size)
		src := r.newStream(seed)
		pace := r.newPacer(w)
		for seq := uint64(0); ; seq++ {
			src.Read(msg)
			due, ok := pace.next(stop)
			if !ok {
				wrote <- nil
				return
			}
			select {
			case credit <- struct{}{}:
			case <-stop:
				wrote <- nil
				return
			}
			if r.cfg.Rate > 0 {
				putHeader(msg, seq, due.Sub(r.epoch))
			}
			sent <- sendRecord{seq: seq, due: due, sent: time.Now()}
			if _, err := c.Write(msg); err != nil {
				wrote <- err
				return
			}
		}
	}()

	n, err := r.readEchoes(ctx, w, c, seed, sent, credit)
	close(stop)
	// Unblock a writer stuck on a server that stopped reading.
	c.SetWriteDeadline(aLongTimeAgo)
	werr := <-wrote
	if err == nil && ctx.Err() == nil {
		err = werr
	}
	return n, err
}

// readEchoes reads and checks the echo of each message sent on c, in order.
// With a Rate each message starts with the header its writer put there
// (sent says which), and the check covers it and every pattern byte.
func (r *runner) readEchoes(ctx context.Context, w int, c conn, seed uint64, sent <-chan sendRecord, credit <-chan struct{}) (int64, error) {
	size := int64(r.cfg.Size)
	want := make([]byte, size)
	got := make([]byte, size)
	src := r.newStream(seed)
	scheduled := r.cfg.Rate > 0
	var n int64
	for {
		c.SetReadDeadline(time.Now().Add(r.cfg.Timeout))
		if ctx.Err() != nil {
			return n, nil
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return n, err
		}
		// The writer records each message before it writes it; only
		// bytes it never sent (a server that speaks first) come before.
		var s sendRecord
		select {
		case s = <-sent:
		case <-ctx.Done():
			return n, nil
		}
		src.Read(want)
		if scheduled {
			putHeader(want, s.seq, s.due.Sub(r.epoch))
		}
		if i := pattern.FirstDiff(got, want); i >= 0 {
			m := &pattern.Mismatch{Offset: n*size + int64(i), Got: got[i], Want: want[i]}
			switch {
			case scheduled && i < HeaderSize:
				return n, r.mismatch(w, headerMismatch(got, s, r.epoch, m))
			case scheduled:
				return n, r.mismatch(w, fmt.Errorf("message %d: %w", s.seq, m))
			}
			return n, r.mismatch(w, m)
		}
		now := time.Now()
		if scheduled {
			r.completeScheduled(w, s, now)
		} else {
			r.complete(w, 1, now.Sub(s.sent))
		}
		<-credit
		n++
	}
}
