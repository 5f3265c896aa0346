package echo

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/echod/echod/echo/internal/session"
)

// watchdog drives a connection's session policy on the goroutine engine:
// the goroutine reports the bytes it moves, and a timer asks the policy,
// eight times per idle timeout, whether a time limit is due. It enforces
// one by closing the socket, which ends any read or write blocked on it.
// Deadlines would not do: crypto/tls makes a write past one fail for good,
// and they miss progress while a write waits, which the watchdog sees (on
// Linux) as bytes the client takes off the send buffer.
type watchdog struct {
	p     *session.Policy
	conn  net.Conn        // its read deadline interrupts a read for a goodbye
	sock  net.Conn        // closed to end it; closing a TLS connection would write
	raw   syscall.RawConn // asked for the unsent count; nil where not known
	epoch time.Time       // the session's clock starts here
	// goodbye says the connection has a processor, which says goodbye at
	// a time limit rather than being cut off.
	goodbye bool
	// stopping is set when the processor is to say goodbye: the read it
	// waits in is interrupted, and the goroutine writes it.
	stopping atomic.Bool

	mu      sync.Mutex
	closed  func() // called when the watchdog closes the socket; see onClose
	st      session.State
	timer   *time.Timer // nil: no limit to watch
	stopped bool
}

// startWatchdog watches c, whose socket is sock (or nil), under p from
// start; goodbye says whether it has a processor.
func startWatchdog(c net.Conn, sock socket, p *session.Policy, start time.Time, goodbye bool) *watchdog {
	w := &watchdog{p: p, conn: c, sock: c, epoch: start, goodbye: goodbye}
	if sock != nil {
		w.sock = sock
		if unsentSupported {
			w.raw, _ = sock.SyscallConn()
		}
	}
	w.mu.Lock()
	w.st = p.Start(0)
	w.arm(0)
	w.mu.Unlock()
	return w
}

// now is the session's clock.
func (w *watchdog) now() int64 { return int64(time.Since(w.epoch)) }

// arm sets the timer for the next check, if there is a limit to check.
func (w *watchdog) arm(now int64) {
	next := w.p.Next(&w.st, now)
	if next <= 0 {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(next, w.check)
	} else {
		w.timer.Reset(next)
	}
}

func (w *watchdog) check() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	now := w.now()
	if w.raw != nil && w.p.WantUnsent(&w.st, now, 0) {
		if q, ok := unsentBytes(w.raw); ok {
			w.p.Unsent(&w.st, q, now)
		}
	}
	switch w.p.Due(&w.st, now, w.goodbye) {
	case session.Close:
		w.sock.Close()
		if w.closed != nil {
			w.closed()
		}
		return
	case session.Stop:
		w.interrupt()
	}
	w.arm(now)
}

// onClose has f called when the watchdog closes the connection for a
// limit, to end a wait for the bandwidth budget.
func (w *watchdog) onClose(f func()) {
	w.mu.Lock()
	w.closed = f
	w.mu.Unlock()
}

// interrupt wakes the goroutine from its read to write the goodbye.
func (w *watchdog) interrupt() {
	w.stopping.Store(true)
	w.conn.SetReadDeadline(time.Unix(1, 0))
}

// sayGoodbye starts the end of a connection with a processor for Shutdown.
func (w *watchdog) sayGoodbye() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || !w.goodbye || w.st.Finishing() {
		return
	}
	now := w.now()
	w.p.Finish(&w.st, session.Closed, now)
	w.interrupt()
	w.arm(now)
}

// ending returns the end that finishes the session, or Open.
func (w *watchdog) ending() session.End {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Ending()
}

// readLimit is how much the connection may read next, at most max.
func (w *watchdog) readLimit(max int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.p.ReadLimit(&w.st, max)
}

// read records n bytes read, and reports whether the session is at its
// byte cap.
func (w *watchdog) read(n int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.p.Read(&w.st, n, w.now())
}

// last returns when the session last made progress.
func (w *watchdog) last() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st.Last()
}

// quiet takes back the progress since last: keep-alives only.
func (w *watchdog) quiet(last int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.p.Quiet(&w.st, last)
}

// finish starts the end of the session for why (its byte cap, or its
// processor's end): the echo was written; see discardAfterLimit.
func (w *watchdog) finish(why session.End) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.now()
	w.p.Finish(&w.st, why, now)
	w.arm(now)
}

// ended names why the session ended, given how its I/O ended, and its
// bytes.
func (w *watchdog) ended(io session.End) (session.End, int64, int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.p.Ended(&w.st, io), w.st.In(), w.st.Out()
}

// stop stops watching once the connection has ended.
func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// progressStep is how much is written at a time where the unsent count is
// not known, so that a slow reader's progress shows between the pieces.
const progressStep = 4 << 10

// write writes all of p to c, reporting what it moves.
func (w *watchdog) write(c net.Conn, p []byte) (int, error) {
	step := len(p)
	if w.raw == nil && w.p.Limits().Idle > 0 {
		step = progressStep
	}
	var written int
	for written < len(p) {
		n, err := c.Write(p[written:min(written+step, len(p))])
		written += n
		w.mu.Lock()
		w.p.Wrote(&w.st, n, w.now())
		w.mu.Unlock()
		if err != nil {
			return written, err
		}
	}
	return written, nil
}
