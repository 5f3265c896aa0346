package echo

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// watchdog applies a connection's time limits on the goroutine engine by
// closing its socket, which ends any read or write blocked on it. Deadlines
// would not do: crypto/tls makes a write past one fail for good, and they
// miss progress while a write waits, which the watchdog sees (on Linux) as
// bytes the client takes off the send buffer. It checks eight times per idle
// timeout, so a busy connection costs an atomic add per read and write.
type watchdog struct {
	sock  net.Conn        // closed to end it; closing a TLS connection would write
	raw   syscall.RawConn // asked for the unsent count; nil where not known
	moved atomic.Int64    // bytes read and written

	mu      sync.Mutex
	timer   *time.Timer // nil: no limit to watch
	stopped bool
	idle    time.Duration
	end     time.Time // when MaxDuration runs out; zero: never
	last    time.Time // the last progress seen
	seen    int64     // moved at the last check
	unsent  int       // the socket's unsent bytes at the last check; -1: not known
	reason  Reason    // why the watchdog closed the connection
	closed  bool
	onClose func() // also called when the watchdog closes it
}

// startWatchdog watches c, whose socket is sock (or nil), under p.
func startWatchdog(c net.Conn, sock socket, p sessionPolicy, start time.Time) *watchdog {
	w := &watchdog{sock: c, idle: p.IdleTimeout, last: start}
	if sock != nil {
		w.sock = sock
		if unsentSupported {
			w.raw, _ = sock.SyscallConn()
		}
	}
	if p.MaxDuration > 0 {
		w.end = start.Add(p.MaxDuration)
	}
	w.mu.Lock()
	w.arm(start)
	w.mu.Unlock()
	return w
}

// arm sets the timer for the next check, if there is a limit to check.
func (w *watchdog) arm(now time.Time) {
	next := w.idle / 8
	if !w.end.IsZero() && (w.idle == 0 || w.end.Sub(now) < next) {
		next = w.end.Sub(now)
	} else if w.idle == 0 {
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
	if w.stopped || w.closed {
		return
	}
	now := time.Now()
	if w.progressed() {
		w.last = now
	}
	switch {
	case !w.end.IsZero() && !now.Before(w.end):
		w.close(ReasonMaxSessionDuration)
	case w.idle > 0 && now.Sub(w.last) >= w.idle:
		w.close(ReasonIdleTimeout)
	default:
		w.arm(now)
	}
}

// progressed reports whether bytes moved since the last check, including
// off the send buffer while a write waits.
func (w *watchdog) progressed() bool {
	m := w.moved.Load()
	moved := m != w.seen
	w.seen = m
	if w.raw == nil || !moved && w.unsent == 0 {
		// Nothing was written since the send buffer was seen empty.
		return moved
	}
	q, ok := unsentBytes(w.raw)
	if !ok {
		return moved
	}
	// When something was written, the count is only a new baseline.
	took := !moved && w.unsent > 0 && q < w.unsent
	w.unsent = q
	return moved || took
}

func (w *watchdog) close(r Reason) {
	w.closed = true
	w.reason = r
	w.sock.Close()
	if w.onClose != nil {
		w.onClose()
	}
}

// linger switches to the time after MaxSessionBytes: only echo the client
// takes off the send buffer is progress now, and d without it ends it.
func (w *watchdog) linger(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.idle = d
	w.last = now
	w.unsent = -1
	w.seen = w.moved.Load()
	w.arm(now)
}

// ended reports whether the watchdog closed the connection, and why.
func (w *watchdog) ended() (Reason, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason, w.closed
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

// write writes all of p to c, counting what it moves.
func (w *watchdog) write(c net.Conn, p []byte) (int, error) {
	step := len(p)
	if w.raw == nil && w.idle > 0 {
		step = progressStep
	}
	var written int
	for written < len(p) {
		n, err := c.Write(p[written:min(written+step, len(p))])
		written += n
		w.moved.Add(int64(n))
		if err != nil {
			return written, err
		}
	}
	return written, nil
}
