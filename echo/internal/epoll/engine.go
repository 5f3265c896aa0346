//go:build linux

// Package epoll is echod's Linux event-loop engine: a few loops, one per
// usable CPU, each waiting on its own epoll instance and echoing every
// connection it owns through one shared read buffer. A connection costs a
// small struct while idle; only the unsent tail of an echo that met a full
// socket buffer is held, and reading that connection pauses until it drains.
package epoll

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a connection ended.
type Reason uint8

// The reasons a connection ends.
const (
	EOF            Reason = iota // the client half-closed and got all its echo
	Reset                        // the client reset or vanished
	ClosedByServer               // Close, CloseAll or a Group's Close
	IdleTimeout                  // no traffic in either direction for Config.IdleTimeout
	MaxDuration                  // open for Config.MaxDuration
	MaxBytes                     // echoed Config.MaxBytes
	Failed                       // an unexpected error from the kernel; see Ended.Err
)

// Ended describes a connection that has ended, for logs and accounting.
type Ended struct {
	Remote   netip.AddrPort
	Group    *Group
	In, Out  int64 // bytes read from and written to the client
	Duration time.Duration
	Reason   Reason
	Err      error // set when Reason is Failed
}

// Config configures an Engine. Zero values mean "no limit" and, for Loops,
// one loop per usable CPU.
type Config struct {
	Loops int
	// IdleTimeout closes a connection with no progress in either
	// direction for this long: nothing read, and nothing written or taken
	// by the client off the socket's send buffer.
	IdleTimeout time.Duration
	// MaxDuration closes a connection this long after it was added.
	MaxDuration time.Duration
	// MaxBytes ends a connection once this many bytes have been echoed;
	// the bytes past it are not echoed. Its write side is shut down at
	// once, and it is closed when the client closes its side or has
	// taken none of its echo for Linger.
	MaxBytes int64
	// Linger is how long a connection past MaxBytes stays open, its input
	// thrown away, once the client takes none of its echo.
	Linger time.Duration
	// OnClose is called on a loop's goroutine after each connection is
	// closed. It must not block and must not call Stop.
	OnClose func(Ended)
	// BytesIn and BytesOut, when set, count every byte the loops read and
	// write, as they move.
	BytesIn, BytesOut *atomic.Uint64
}

// ErrStopped is returned by Add after Stop.
var ErrStopped = errors.New("epoll engine stopped")

// Engine runs the loops. Add hands it connections; it closes each of them
// when the client is done, a limit is reached, or the engine is told to.
type Engine struct {
	cfg   Config
	epoch time.Time // connection times are nanoseconds since epoch
	loops []*loop
	wg    sync.WaitGroup // one count per loop goroutine

	stopped  atomic.Bool
	closeAll atomic.Bool // sticky: every connection, present or future, is closed
}

// Start creates the loops and starts their goroutines.
func Start(cfg Config) (*Engine, error) {
	n := cfg.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	if cfg.OnClose == nil {
		cfg.OnClose = func(Ended) {}
	}
	e := &Engine{cfg: cfg, epoch: time.Now()}
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

// Add hands the engine a connected, non-blocking TCP socket, which it owns
// from now on: it closes fd whatever happens, and reports the end to
// Config.OnClose unless Add returns an error.
func (e *Engine) Add(fd int, remote netip.AddrPort, g *Group) error {
	if e.stopped.Load() {
		closeFD(fd)
		return ErrStopped
	}
	g.wg.Add(1)
	c := &conn{fd: int32(fd), group: g, remote: remote}
	// A descriptor always goes to the same loop, so a number the kernel
	// reuses can never name two connections in two loops at once.
	if err := e.loops[fd%len(e.loops)].push(c); err != nil {
		g.wg.Done()
		closeFD(fd)
		return err
	}
	return nil
}

// CloseAll closes every connection now and every one added from now on.
func (e *Engine) CloseAll() {
	e.closeAll.Store(true)
	for _, l := range e.loops {
		l.wake()
	}
}

// Stop closes every connection, ends the loops, waits for their goroutines
// and frees their descriptors. It must not be called from OnClose.
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

// Group is a set of connections that can be closed and waited for together:
// those accepted by one Serve call, so that its context ends only them.
type Group struct {
	e      *Engine
	closed atomic.Bool
	wg     sync.WaitGroup
}

// NewGroup returns an empty group.
func (e *Engine) NewGroup() *Group { return &Group{e: e} }

// Close closes every connection of the group now and every one added to it
// from now on. It does not wait; see Wait.
func (g *Group) Close() {
	g.closed.Store(true)
	for _, l := range g.e.loops {
		l.closeGroup(g)
	}
}

// Wait waits until every connection added to the group has ended.
func (g *Group) Wait() { g.wg.Wait() }
