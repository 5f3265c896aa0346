package echo

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// bufferSize is how much of a client's data a connection holds at most. The
// write of one read completes before the next read starts, so a client that
// sends faster than it reads fills the kernel's socket buffers and then
// meets TCP backpressure; the server never holds more than this.
const bufferSize = 32 << 10

// serveConn echoes c until the client half-closes, resets or goes away, or a
// session limit ends it, then closes it. It returns only after c is closed.
func (s *Server) serveConn(c net.Conn) {
	start := time.Now()
	r := s.newReader(c)
	p := s.sessionPolicy()
	var d deadline
	d.start(c, p, start)
	var in, out int64
	reason := "eof"
	for {
		if p.MaxBytes > 0 {
			// Read no more than the limit, so that exactly the allowed
			// bytes are echoed.
			r.limit = int(min(p.MaxBytes-in, bufferSize))
		}
		d.progress(c)
		// The buffer is taken only once data has arrived and given back
		// as soon as it is echoed, so an idle connection holds none.
		buf, n, err := r.read()
		if n > 0 {
			in += int64(n)
			s.counts.tcpBytesIn.Add(uint64(n))
			// Write only the n bytes read, never the whole buffer: the
			// classic bug that pads every reply with stale bytes.
			w, werr := d.write(c, buf[:n])
			out += int64(w)
			s.counts.tcpBytesOut.Add(uint64(w))
			if werr != nil {
				err = werr
			} else if p.MaxBytes > 0 && in >= p.MaxBytes {
				s.buffers.Put(buf)
				reason = ReasonMaxSessionBytes.String()
				s.limited(ReasonMaxSessionBytes)
				break
			}
		}
		s.buffers.Put(buf)
		if err != nil {
			// io.EOF is the client's half-close: everything it sent has
			// been written back above, so closing now loses nothing.
			reason = s.endReason(err, d)
			break
		}
	}
	c.Close()
	s.logger().Debug("connection closed",
		"remote", c.RemoteAddr().String(),
		"bytes_in", in,
		"bytes_out", out,
		"duration", time.Since(start),
		"reason", reason)
}

// sessionPolicy is what a connection may do once admitted: plain values that
// any engine serving the connection applies. Zero fields mean no limit.
type sessionPolicy struct {
	IdleTimeout time.Duration // no progress in either direction for this long ends it
	MaxDuration time.Duration // it ends this long after it was accepted
	MaxBytes    int64         // it ends once the client has sent this many bytes, all echoed
}

func (s *Server) sessionPolicy() sessionPolicy {
	return sessionPolicy{
		IdleTimeout: s.IdleTimeout,
		MaxDuration: s.MaxSessionDuration,
		MaxBytes:    s.MaxSessionBytes,
	}
}

// deadline applies a sessionPolicy's timeouts to a blocking connection with
// a single deadline for both directions, since reads and writes alternate.
// Moving a deadline costs a timer update, so for the idle timeout it is moved
// only once an eighth of the timeout has passed since it was last set: a
// connection is closed between IdleTimeout and 9/8 of it after its last
// progress, and a busy one pays for a timer update now and then rather than
// per read.
type deadline struct {
	idle, slack time.Duration
	end         time.Time // when MaxDuration runs out; zero: never
	armed       time.Time // when the deadline was last moved
}

func (d *deadline) start(c net.Conn, p sessionPolicy, start time.Time) {
	d.idle = p.IdleTimeout
	d.slack = p.IdleTimeout / 8
	if p.MaxDuration > 0 {
		d.end = start.Add(p.MaxDuration)
		if d.idle == 0 {
			c.SetDeadline(d.end)
		}
	}
}

// progress records that the connection moved bytes just now, pushing the
// idle deadline out if it is due.
func (d *deadline) progress(c net.Conn) {
	if d.idle == 0 {
		return
	}
	now := time.Now()
	if now.Sub(d.armed) < d.slack {
		return
	}
	d.armed = now
	t := now.Add(d.idle + d.slack)
	if !d.end.IsZero() && d.end.Before(t) {
		t = d.end
	}
	c.SetDeadline(t)
}

// write writes all of p to c. A write that times out having taken some bytes
// is progress (a slow reader), so it goes on; one that took none ends the
// connection.
func (d *deadline) write(c net.Conn, p []byte) (int, error) {
	var written int
	for {
		n, err := c.Write(p[written:])
		written += n
		if err == nil || n == 0 || d.idle == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
		d.progress(c)
	}
}

// buffer returns a pooled buffer. A pointer to an array keeps the pool free
// of allocations.
func (s *Server) buffer() *[bufferSize]byte {
	if buf, ok := s.buffers.Get().(*[bufferSize]byte); ok {
		return buf
	}
	return new([bufferSize]byte)
}

// reader reads a connection into pooled buffers.
type reader struct {
	s     *Server
	c     net.Conn
	rc    syscall.RawConn // nil: read c with a buffer taken beforehand
	limit int             // read at most this many bytes at a time; 0: a whole buffer

	// The result of readRaw, which rc.Read calls; fields rather than
	// captured variables, so that a read allocates nothing.
	buf    *[bufferSize]byte
	n      int
	err    error
	readFn func(fd uintptr) bool
}

func (s *Server) newReader(c net.Conn) *reader {
	r := &reader{s: s, c: c}
	// Only a plain TCP socket is read directly; a wrapper such as TLS
	// reads through buffers of its own.
	if tc, ok := c.(*net.TCPConn); ok && rawReadSupported {
		if rc, err := tc.SyscallConn(); err == nil {
			r.rc = rc
			r.readFn = r.readRaw
		}
	}
	return r
}

// read waits for data and returns a pooled buffer holding n bytes of it,
// or the error that ended the wait (io.EOF on the client's half-close).
// The caller gives buf back to the pool.
func (r *reader) read() (buf *[bufferSize]byte, n int, err error) {
	if r.rc == nil {
		buf = r.s.buffer()
		n, err = r.c.Read(r.space(buf))
		return buf, n, err
	}
	r.buf, r.n, r.err = nil, 0, nil
	if err := r.rc.Read(r.readFn); err != nil {
		// Closed, or past a deadline, while waiting.
		return r.s.buffer(), 0, err
	}
	return r.buf, r.n, r.err
}

// space is the part of buf a read may fill.
func (r *reader) space(buf *[bufferSize]byte) []byte {
	if r.limit > 0 {
		return buf[:r.limit]
	}
	return buf[:]
}

// readRaw is called by the runtime's poller when the socket may be
// readable: it takes a buffer and reads, or gives the buffer back and
// asks to wait when there turns out to be nothing to read.
func (r *reader) readRaw(fd uintptr) bool {
	r.buf = r.s.buffer()
	for {
		n, err := rawRead(fd, r.space(r.buf))
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			r.s.buffers.Put(r.buf)
			r.buf = nil
			return false
		case err != nil:
			r.err = err
		case n == 0:
			r.err = io.EOF
		default:
			r.n = n
		}
		return true
	}
}

// endReason names why a connection ended, for the log, and counts the ends
// that a session limit caused.
func (s *Server) endReason(err error, d deadline) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		r := ReasonIdleTimeout
		if !d.end.IsZero() && !time.Now().Before(d.end) {
			r = ReasonMaxSessionDuration
		}
		s.limited(r)
		return r.String()
	}
	switch {
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.Is(err, net.ErrClosed):
		return "closed by server"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset by client"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	default:
		return err.Error()
	}
}
