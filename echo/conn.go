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
	p := s.sessionPolicy()
	sock := socketOf(c)
	w := startWatchdog(c, sock, p, start)
	defer w.stop()
	r := s.newReader(c)
	var in, out int64
	reason := "eof"
	for {
		if p.MaxBytes > 0 {
			// Read no more than the limit, so that exactly the allowed
			// bytes are echoed.
			r.limit = int(min(p.MaxBytes-in, bufferSize))
		}
		// The buffer is taken only once data has arrived and given back
		// as soon as it is echoed, so an idle connection holds none.
		buf, n, err := r.read()
		if n > 0 {
			in += int64(n)
			w.moved.Add(int64(n))
			s.counts.tcpBytesIn.Add(uint64(n))
			// Write only the n bytes read, never the whole buffer: the
			// classic bug that pads every reply with stale bytes.
			wn, werr := w.write(c, buf[:n])
			out += int64(wn)
			s.counts.tcpBytesOut.Add(uint64(wn))
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
			reason = s.endReason(err, w)
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

// socket is what a connection is under its wrappers: one the runtime can
// wait on and that can be shut down for writing, such as *net.TCPConn.
type socket interface {
	net.Conn
	syscall.Conn
	CloseWrite() error
}

// socketOf returns the socket under c, which may be c itself, or nil when c
// wraps something else (net.Pipe) or a wrapper that does not say what it
// wraps.
func socketOf(c net.Conn) socket {
	// Wrappers nest a level or two (TLS over PROXY protocol); the bound
	// only guards against a wrapper that returns itself.
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
		// Closed while waiting.
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
func (s *Server) endReason(err error, w *watchdog) string {
	if r, ok := w.ended(); ok {
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
