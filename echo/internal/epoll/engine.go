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
)

// End is why a connection ended; the engine's owner maps it to its own
// vocabulary.
type End uint8

// The ends of a connection.
const (
	EOF         End = iota // the client half-closed and got all its echo
	Reset                  // the client reset or vanished
	Closed                 // CloseAll or Stop
	IdleTimeout            // no progress in either direction for Config.IdleTimeout
	MaxDuration            // open for Config.MaxDuration
	MaxBytes               // echoed Config.MaxBytes
	Failed                 // an unexpected error from the kernel; see Ended.Err
)

// Ended describes a connection that has ended, for logs and accounting.
type Ended struct {
	Remote   netip.AddrPort
	In, Out  int64 // bytes read from and written to the client
	Duration time.Duration
	End      End
	Err      error // set when End is Failed
}

// Config configures an Engine. Zero values mean no limit and, for Loops,
// one per usable CPU.
type Config struct {
	Loops int
	// IdleTimeout closes a connection with no progress for this long:
	// nothing read, written or taken by the client off the send buffer.
	IdleTimeout time.Duration
	// MaxDuration closes a connection this long after it was accepted.
	MaxDuration time.Duration
	// MaxBytes ends a connection once this many bytes have been echoed:
	// its write side is shut down, its input thrown away, and it is closed
	// when the client closes its side or takes none of its echo for Linger.
	MaxBytes int64
	Linger   time.Duration
	// Admit is called on a loop's goroutine for each accepted connection;
	// false resets it. It must not block. Nil admits every connection.
	Admit func(remote netip.AddrPort) bool
	// OnClose, which must be set, is called on a loop's goroutine after
	// each admitted connection is closed. It must not block and must not
	// call Stop.
	OnClose func(Ended)
	// Bandwidth, if set, paces each connection's echo: one is read only
	// as fast as its budget allows it to be sent, and not at all while it
	// waits for more.
	Bandwidth *bandwidth.Limiter
	// BytesIn and BytesOut, which must be set, count every byte the loops
	// read and write, as they move.
	BytesIn, BytesOut *atomic.Uint64
}

// ErrStopped is returned by Listen after Stop.
var ErrStopped = errors.New("epoll engine stopped")

// Engine runs the loops.
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
	if cfg.Admit == nil {
		cfg.Admit = func(netip.AddrPort) bool { return true }
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

// CloseAll closes every connection now and every one accepted from now on.
func (e *Engine) CloseAll() {
	e.closeAll.Store(true)
	for _, l := range e.loops {
		l.wake()
	}
}

// Stop closes every connection and listener, ends the loops and frees
// their descriptors.
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
