package echo

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/echod/echod/echo/internal/session"
)

// bufferSize is how much of a client's data a connection holds at most: the
// next read waits for the write of the last, so a client that sends faster
// than it reads meets TCP backpressure.
const bufferSize = 32 << 10

// conn is a connection served on its own goroutine, tracked by pointer: a
// net.Conn need not be comparable.
type conn struct {
	net.Conn
	source netip.Addr     // as admission counted it; the zero Addr if not IP
	remote netip.AddrPort // the client's, when Adopt was told it
	prefix []byte         // read before Adopt, served first
	proc   Processor      // nil: echo
	watch  atomic.Pointer[watchdog]

	// With Server.Bandwidth: closed by Close, or when the watchdog ends
	// the connection, to end a wait for the budget at once. Made before
	// the connection is admitted, as Close may come from then on.
	stop     chan struct{}
	stopOnce sync.Once
}

// Close closes the connection, ending a wait for the budget.
func (c *conn) Close() error {
	c.endPause()
	return c.Conn.Close()
}

func (c *conn) endPause() {
	if c.stop != nil {
		c.stopOnce.Do(func() { close(c.stop) })
	}
}

// pause waits d for the bandwidth budget, and reports false if the
// connection was closed meanwhile.
func (c *conn) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.stop:
		return false
	}
}

// serveConn is the goroutine engine, the specification the event loops must
// agree with: read what has arrived, write back exactly those bytes (or
// what its processor makes of them), repeat, until the client half-closes
// or goes away, or a limit, Shutdown or Close ends the connection. Its
// session policy (echo/internal/session, driven by watchdog.go) decides
// every limit and why the connection ended. Then it closes c and reports.
func (s *Server) serveConn(c *conn) {
	start := time.Now()
	sock := socketOf(c.Conn)
	w := startWatchdog(c.Conn, sock, s.policy(), start, c.proc != nil)
	c.watch.Store(w)
	defer w.stop()
	// The bandwidth budgets: a connection reads about what it may send
	// now, and waits before sending what takes it past its budget,
	// reading nothing meanwhile.
	flow := s.Bandwidth.Open(start, c.source)
	defer flow.Close()
	if flow != nil {
		w.onClose(c.endPause)
	}
	r := s.newReader(c.Conn, sock) // an idle connection holds no buffer: idlebuffer.go
	var procOut []byte             // a processor's output, reused
	var err error
	for err == nil {
		// stopping: the policy ended the session and its processor has
		// a goodbye to say, now or, if it waits for a message, after it.
		stopping := w.stopping.Load()
		if stopping {
			if !goodbyeWaits(c, w) {
				err = s.writeGoodbye(c, w)
				break
			}
			c.SetReadDeadline(time.Time{}) // the watchdog's interrupt
		}
		var data []byte
		limit := bufferSize
		if flow != nil {
			limit = min(limit, flow.Allow(time.Now()))
		}
		if len(c.prefix) > 0 {
			n := min(len(c.prefix), limit)
			if !stopping { // (a message the goodbye waits for may pass the byte cap)
				n = w.readLimit(n)
			}
			data, c.prefix = c.prefix[:n], c.prefix[n:]
		} else {
			if !stopping {
				limit = w.readLimit(limit)
			}
			data, err = r.read(limit)
		}
		if len(data) > 0 {
			var last int64
			if c.proc != nil {
				last = w.last()
			}
			atCap := w.read(len(data))
			s.counts.tcpBytesIn.Add(uint64(len(data)))
			// Write back the bytes read, never the whole buffer: the
			// classic bug that pads every reply with stale bytes.
			reply, end := data, false
			if c.proc != nil {
				procOut, end = c.proc.Process(procOut[:0], data)
				reply = procOut
			}
			if wait := flow.Spend(time.Now(), len(reply)); wait > 0 && !c.pause(wait) {
				r.release()
				err = net.ErrClosed
				break
			}
			n, werr := w.write(c.Conn, reply)
			s.counts.tcpBytesOut.Add(uint64(n))
			if c.proc != nil && quiet(c.proc) {
				w.quiet(last)
			}
			switch {
			case werr != nil:
				err = werr
			case end:
				w.finish(session.Done)
				err = errFinishing
			case atCap:
				w.finish(session.MaxBytes)
				err = errFinishing
				if c.proc != nil && goodbyeWaits(c, w) {
					w.stopping.Store(true) // said once the message ends
					err = nil
				} else if c.proc != nil {
					err = s.writeGoodbye(c, w)
				}
			}
		}
		r.release()
		if err != nil && err != errFinishing && w.stopping.Load() {
			if errors.Is(err, os.ErrDeadlineExceeded) && goodbyeWaits(c, w) {
				err = nil // the interrupt, while a message goes on
			} else {
				err = s.writeGoodbye(c, w)
			}
		}
	}
	if err == errFinishing {
		s.discardAfterLimit(c.Conn, sock, r)
	}
	// io.EOF is the client's half-close: everything it sent has been
	// written back above, so closing now loses nothing.
	c.Close()
	io, err := ioEnd(err)
	end, in, out := w.ended(io)
	if end != session.Failed {
		err = nil
	}
	remote := c.RemoteAddr().String
	if c.remote.IsValid() {
		remote = c.remote.String
	}
	if c.proc != nil {
		tellEnded(c.proc)
	}
	s.connEnded(c, remote, ended{
		source: c.source, in: in, out: out, duration: time.Since(start),
		reason: reasonOf(end), err: err,
	})
}

// writeGoodbye writes the last message of c's processor, for an end the
// policy decided: then c finishes as after its byte cap.
func (s *Server) writeGoodbye(c *conn, w *watchdog) error {
	c.SetReadDeadline(time.Time{})
	n, err := w.write(c.Conn, c.proc.Stop(nil, reasonOf(w.ending())))
	s.counts.tcpBytesOut.Add(uint64(n))
	if err != nil {
		return err
	}
	return errFinishing
}

// goodbyeWaits reports whether c's goodbye waits for the message its
// processor is part-way through; not for the idle timeout, which a
// stalled message is.
func goodbyeWaits(c *conn, w *watchdog) bool {
	return c.proc != nil && w.ending() != session.IdleTimeout && busy(c.proc)
}

// errFinishing ends a connection's echo when its policy or processor
// finishes it: see discardAfterLimit.
var errFinishing = errors.New("session finishing")

// ioEnd says how a connection's I/O ended, given the error that ended its
// loop, which it returns when unexpected. The policy names the reason.
func ioEnd(err error) (session.End, error) {
	switch {
	case err == errFinishing:
		return session.Open, nil
	case errors.Is(err, io.EOF):
		return session.EOF, nil
	case errors.Is(err, net.ErrClosed):
		return session.Closed, nil
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT):
		return session.Reset, nil
	}
	return session.Failed, err
}

// reasonOf names a session's end, as its policy decided it, in the
// server's vocabulary: the one translation, for both engines.
func reasonOf(e session.End) Reason {
	switch e {
	case session.IdleTimeout:
		return ReasonIdleTimeout
	case session.MaxDuration:
		return ReasonMaxSessionDuration
	case session.MaxBytes:
		return ReasonMaxSessionBytes
	case session.EOF:
		return endEOF
	case session.Reset:
		return endReset
	case session.Closed:
		return ReasonShutdown
	case session.Done:
		return endDone
	}
	return endFailed
}

// limitLinger is how long a finishing connection (past MaxSessionBytes,
// or after a processor's goodbye) stays open once the client stops taking
// what was written: see discardAfterLimit.
const limitLinger = 2 * time.Second

// policy returns the server's session policy, made from its fields once.
func (s *Server) policy() *session.Policy {
	s.policyOnce.Do(func() {
		s.sessionPolicy = session.New(session.Limits{
			Idle: s.IdleTimeout, Duration: s.MaxSessionDuration,
			Bytes: s.MaxSessionBytes, Linger: limitLinger,
		})
	})
	return s.sessionPolicy
}

// discardAfterLimit ends a connection whose session is finishing without
// losing what was written, which closing a socket with unread input would
// (the kernel resets it): the write side is shut down, and input thrown
// away until the client closes its side, or the policy's linger passes.
func (s *Server) discardAfterLimit(c net.Conn, sock socket, r *reader) {
	// A TLS connection sends its close_notify, then the socket its FIN.
	if cw, ok := c.(interface{ CloseWrite() error }); ok && c != net.Conn(sock) {
		cw.CloseWrite()
	}
	if sock != nil {
		sock.CloseWrite()
	}
	for {
		_, err := r.read(bufferSize)
		r.release()
		if err != nil {
			return
		}
	}
}

// socket is what a connection is under its wrappers, such as *net.TCPConn.
type socket interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
}

// socketOf returns the socket under c, which may be c itself, or nil when c
// is something else (net.Pipe) or a wrapper that does not say what it wraps
// with NetConn (crypto/tls) or Raw (go-proxyproto).
func socketOf(c net.Conn) socket {
	// The bound guards against a wrapper that returns itself.
	for range 8 {
		if s, ok := c.(socket); ok {
			return s
		}
		switch w := c.(type) {
		case interface{ NetConn() net.Conn }: // crypto/tls
			c = w.NetConn()
		case interface{ Raw() net.Conn }: // go-proxyproto
			c = w.Raw()
		default:
			return nil
		}
	}
	return nil
}
