//go:build linux

// Package epoll is echod's Linux event-loop engine: one loop per usable CPU,
// each with its own epoll instance, accepting on the listeners it is given
// and echoing the connections it owns through one shared read buffer. An
// idle connection costs a small struct; only the unsent tail of an echo that
// met a full socket buffer is held, and the connection is not read until it
// drains.
package epoll

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/echo/internal/session"
)

// Ended describes a connection that has ended, for logs and accounting.
type Ended struct {
	Remote   netip.AddrPort
	In, Out  int64 // bytes read from and written to the client
	Duration time.Duration
	End      session.End // as the policy decided
	Err      error       // set when End is session.Failed
}

// Config configures an Engine. A zero Loops means one per usable CPU.
type Config struct {
	Loops int
	// Policy decides every connection's limits and end; nil applies none.
	Policy *session.Policy
	// Admit is called on a loop's goroutine for each accepted connection;
	// false resets it. It must not block. Nil admits every connection.
	Admit func(remote netip.AddrPort) bool
	// Closed, which must be set, is called on a loop's goroutine as each
	// admitted or adopted connection is closed: it counts the end and
	// gives back the connection's place under the limits at once, so that
	// a client that reconnects at once is not refused. It must not block,
	// log or wait for a lock held longer than it takes to count. It
	// reports whether the owner wants the end handed over (to log it):
	// then it comes through TakeEnded.
	Closed func(Ended) (handOver bool)
	// Bandwidth, if set, paces each connection's output: one is read
	// about as fast as its budget allows it to be sent, and what takes it
	// past its budget waits, with the connection unread, until it may go.
	Bandwidth *bandwidth.Limiter
	// BytesIn and BytesOut, which must be set, count every byte the loops
	// read and write, as they move.
	BytesIn, BytesOut *atomic.Uint64
}

// ErrStopped is returned by Listen after Stop.
var ErrStopped = errors.New("epoll engine stopped")

// Engine runs the loops.
type Engine struct {
	cfg    Config
	policy *session.Policy
	next   atomic.Uint32 // the loop the next adopted connection goes to
	ends   endQueue
	epoch  time.Time // connection times are nanoseconds since epoch
	loops  []*loop
	wg     sync.WaitGroup // one count per loop goroutine

	stopped  atomic.Bool
	closeAll atomic.Bool // sticky: every connection, present or future, is closed
	goodbye  atomic.Bool // sticky: connections with a processor say goodbye
}

// endQueue carries the ends of connections from the loops to the engine's
// owner, which logs them off the loops.
type endQueue struct {
	mu    sync.Mutex
	ends  []Ended
	ready chan struct{} // holds a token while ends is not empty
}

// Ended is ready to receive when TakeEnded has ends to return: those
// Config.Closed asked for. The loops never wait for them to be taken.
func (e *Engine) Ended() <-chan struct{} { return e.ends.ready }

// TakeEnded appends the ends reported since the last call to dst.
func (e *Engine) TakeEnded(dst []Ended) []Ended {
	q := &e.ends
	q.mu.Lock()
	dst = append(dst, q.ends...)
	clear(q.ends)
	q.ends = q.ends[:0]
	q.mu.Unlock()
	return dst
}

// hand passes a loop's batch of ends to the owner.
func (q *endQueue) hand(batch []Ended) {
	q.mu.Lock()
	q.ends = append(q.ends, batch...)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Adopt serves fd, a connected TCP socket the engine owns from now on, in
// one of its loops as if accepted from remote and admitted: buffered (which
// the engine keeps) first, as if just read, then what arrives, through proc
// unless it is nil. Its end is reported like any other, also if the engine
// has stopped.
func (e *Engine) Adopt(fd int, remote netip.AddrPort, buffered []byte, proc Processor) {
	l := e.loops[int(e.next.Add(1))%len(e.loops)]
	l.command(op{conn: &conn{fd: int32(fd), remote: packAddr(remote), proc: proc}, buffered: buffered})
}

// Start creates the loops and starts their goroutines.
func Start(cfg Config) (*Engine, error) {
	n := cfg.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if cfg.Admit == nil {
		cfg.Admit = func(netip.AddrPort) bool { return true }
	}
	if cfg.Policy == nil {
		cfg.Policy = session.New(session.Limits{})
	}
	e := &Engine{cfg: cfg, policy: cfg.Policy, epoch: time.Now(), ends: endQueue{ready: make(chan struct{}, 1)}}
	for range n {
		l, err := newLoop(e)
		if err != nil {
			for _, l := range e.loops {
				l.free()
			}
			return nil, fmt.Errorf("start event loop: %w", err)
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Go(l.run)
	}
	return e, nil
}

// now returns the engine's monotonic clock.
func (e *Engine) now() int64 { return int64(time.Since(e.epoch)) }

// CloseAll closes every connection now and every one accepted from now on.
func (e *Engine) CloseAll() {
	e.closeAll.Store(true)
	for _, l := range e.loops {
		l.wake()
	}
}

// SayGoodbye starts the end of every connection with a processor, which
// writes its last message (Processor.Stop): for a drain. Plain ones go on.
func (e *Engine) SayGoodbye() {
	e.goodbye.Store(true)
	for _, l := range e.loops {
		l.wake()
	}
}

// Stop closes every connection and listener, ends the loops and frees
// their descriptors. The ends of the connections it closed are in
// TakeEnded when it returns.
func (e *Engine) Stop() {
	if e.stopped.Swap(true) {
		e.wg.Wait()
		return
	}
	e.CloseAll()
	e.wg.Wait()
	for _, l := range e.loops {
		l.free()
	}
}
