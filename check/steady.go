package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A far or slow path makes a correct server's echo take longer than a
// check's deadline allows. What the checks read is counted, so that a
// check whose deadline passes while the echo is still arriving steadily
// goes on, up to a cap, instead of blaming the server for the path's speed.

// extendBy is how many times its deadline a check may run while the echo
// keeps arriving steadily.
const extendBy = 5

// Steadiness is judged over the last steadyWindow sampling intervals (2 s):
// some bytes must have come back in all but a quarter of them, which lets a
// retransmission's pause pass. The rate is over the last rateWindow (5 s).
const (
	sampleEvery  = 250 * time.Millisecond
	steadyWindow = 8
	rateWindow   = 20
)

// errCheckDeadline is the cause of a check stopped at its deadline.
var errCheckDeadline = errors.New("the check's deadline passed")

// counted is a connection whose reads add to its target's count.
type counted struct {
	conn
	n *atomic.Int64
}

func (c counted) Read(p []byte) (int, error) {
	n, err := c.conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// NetConn returns the connection under c, for socket options.
func (c counted) NetConn() net.Conn { return c.conn }

// watch holds a running check to its deadline, or lets it go on, up to its
// cap, while the echo keeps arriving steadily. It cancels ctx with
// errCheckDeadline when it stops the check.
type watch struct {
	deadline time.Duration
	mu       sync.Mutex
	extended bool    // the deadline passed with the echo arriving steadily
	stopped  bool    // the watch stopped the check: the echo was not arriving steadily
	rate     float64 // bytes a second over the last rateWindow intervals
}

// start samples read counts until ctx ends; wait for wg before reading w.
func (w *watch) start(ctx context.Context, wg *sync.WaitGroup, received *atomic.Int64, cancel context.CancelCauseFunc) {
	wg.Go(func() {
		tick := time.NewTicker(sampleEvery)
		defer tick.Stop()
		deadline := time.NewTimer(w.deadline)
		defer deadline.Stop()
		samples := []int64{received.Load()}
		past := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				samples = append(samples, received.Load())
				if len(samples) > rateWindow+1 {
					samples = samples[1:]
				}
			case <-deadline.C:
				past = true
			}
			if !past {
				continue
			}
			if !steady(samples) {
				w.mu.Lock()
				w.stopped = true
				w.mu.Unlock()
				cancel(errCheckDeadline)
				return
			}
			w.mu.Lock()
			w.extended = true
			w.rate = float64(samples[len(samples)-1]-samples[0]) / (time.Duration(len(samples)-1) * sampleEvery).Seconds()
			w.mu.Unlock()
		}
	})
}

// steady reports whether bytes came back in all but a quarter of the last
// steadyWindow intervals.
func steady(samples []int64) bool {
	if len(samples) < steadyWindow+1 {
		return false
	}
	s := samples[len(samples)-steadyWindow-1:]
	quiet := 0
	for i := 1; i < len(s); i++ {
		if s[i] <= s[i-1] {
			quiet++
		}
	}
	return quiet <= steadyWindow/4
}

// slowNote is what a check that went past its deadline adds to its
// result: on a pass, why it waited; on a failure, why it is the path's
// speed or the server's, not its echo.
func (w *watch) slowNote(addr string, passed bool) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.extended {
		return ""
	}
	switch {
	case passed:
		return fmt.Sprintf("; past its %v deadline, the echo still arriving steadily at %s/s: a slow path or server, not a wrong one", w.deadline, size(int64(w.rate)))
	case w.stopped:
		return fmt.Sprintf("the echo arrived steadily at %s/s past the check's deadline of %v, then stopped", size(int64(w.rate)), w.deadline)
	}
	return fmt.Sprintf("the echo was still arriving steadily at %s/s, %d times the check's deadline of %v: a slow path or server, not a wrong echo; %s",
		size(int64(w.rate)), extendBy, w.deadline, pathHint(addr))
}
