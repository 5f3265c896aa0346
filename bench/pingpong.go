package bench

import (
	"context"
	"io"
	"net"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// pingpong sends one message at a time on c and waits for its echo: the
// round trip of each message is its latency. Every message is new bytes of
// the connection's stream, so a server that echoes stale data is caught.
func (r *runner) pingpong(ctx context.Context, w int, c *net.TCPConn, seed uint64) (int64, error) {
	size := int64(r.cfg.Size)
	msg := make([]byte, size)
	got := make([]byte, size)
	src := pattern.NewStream(seed)
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

// pipelined keeps Depth messages in flight on c: a writer sends a message
// whenever fewer are outstanding, while this goroutine reads and checks the
// echoes in order. A message's latency runs from just before its write to
// the end of its echo, so it includes waiting behind the messages before it.
func (r *runner) pipelined(ctx context.Context, w int, c *net.TCPConn, seed uint64) (int64, error) {
	size := int64(r.cfg.Size)
	// sent holds the send time of each outstanding message; its capacity is
	// the depth, so the writer blocks while Depth messages are in flight.
	sent := make(chan time.Time, r.cfg.Depth)
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		msg := make([]byte, size)
		src := pattern.NewStream(seed)
		for {
			src.Read(msg)
			select {
			case sent <- time.Now():
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

// readEchoes reads and checks the echo of each message sent on c, in order.
func (r *runner) readEchoes(ctx context.Context, w int, c *net.TCPConn, seed uint64, sent <-chan time.Time) (int64, error) {
	size := int64(r.cfg.Size)
	want := make([]byte, size)
	got := make([]byte, size)
	src := pattern.NewStream(seed)
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
