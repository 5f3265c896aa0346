package echo

import (
	"context"
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
	r := s.newReader(c, sock)
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
				s.discardAfterLimit(c, sock, r, w)
				// Counted as it ends, as the event loop does.
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

// limitLinger is how long a connection that reached MaxSessionBytes stays
// open, discarding its input, once the client stops taking its echo: see
// discardAfterLimit.
const limitLinger = 2 * time.Second

// discardAfterLimit ends a connection that has echoed its MaxSessionBytes
// without losing any of that echo. Closing a socket with unread input makes
// the kernel reset the connection and throw away the echo it still holds
// for a slow reader, so instead the write side is shut down (the client
// reads its last byte, then EOF), and the input that keeps coming is read
// and thrown away until the client closes its side too. That lasts as long
// as the client keeps taking echo off the server's send buffer, and at most
// limitLinger after it stops: long enough for a client to see the EOF and
// stop sending, short enough that a client that goes on sending past its
// limit does not hold the connection. MaxSessionDuration still applies.
func (s *Server) discardAfterLimit(c net.Conn, sock socket, r *reader, w *watchdog) {
	w.linger(limitLinger)
	closeWrite(c, sock)
	r.limit = 0
	for {
		buf, _, err := r.read()
		s.buffers.Put(buf)
		if err != nil {
			return
		}
	}
}

// closeWrite shuts down c's write side: a TLS connection sends its
// close_notify, then the socket under it its FIN.
func closeWrite(c net.Conn, sock socket) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && c != net.Conn(sock) {
		cw.CloseWrite()
	}
	if sock != nil {
		sock.CloseWrite()
	}
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
// wraps. A wrapper says so with NetConn() net.Conn, as crypto/tls does (or
// go-proxyproto's Raw); one that does not holds a buffer while it is idle,
// and a slow reader's progress shows to the idle timeout only as the
// server's writes (in 4 KiB pieces) return.
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

// reader reads a connection into pooled buffers, taking one only once
// there is something to read.
type reader struct {
	s     *Server
	c     net.Conn
	rc    syscall.RawConn // c is a plain socket, read directly; nil: read through c
	limit int             // read at most this many bytes at a time; 0: a whole buffer

	// For a connection that wraps a socket (TLS, PROXY protocol): the
	// socket, waited on for readability before a buffer is taken.
	wait       syscall.RawConn
	handshaken bool // a TLS handshake, if any, is done
	// pending says the wrapper may hold bytes it has read from the socket
	// already (the rest of a TLS record, what came with a PROXY header),
	// which a wait on the socket would not see.
	pending bool
	peekFn  func(fd uintptr) bool
	peekBuf [1]byte

	// The result of readRaw, which rc.Read calls; fields rather than
	// captured variables, so that a read allocates nothing.
	buf    *[bufferSize]byte
	n      int
	err    error
	readFn func(fd uintptr) bool
}

func (s *Server) newReader(c net.Conn, sock socket) *reader {
	r := &reader{s: s, c: c}
	if !rawReadSupported || sock == nil {
		return r
	}
	rc, err := sock.SyscallConn()
	if err != nil {
		return r
	}
	// Only a plain TCP socket is read directly; a wrapper such as TLS
	// reads through buffers of its own, and is read through, once its
	// socket is readable.
	if _, ok := c.(*net.TCPConn); ok {
		r.rc = rc
		r.readFn = r.readRaw
		return r
	}
	r.wait = rc
	r.pending = true
	r.peekFn = r.peek
	return r
}

// read waits for data and returns a pooled buffer holding n bytes of it,
// or the error that ended the wait (io.EOF on the client's half-close).
// The caller gives buf back to the pool.
func (r *reader) read() (buf *[bufferSize]byte, n int, err error) {
	switch {
	case r.rc != nil:
		r.buf, r.n, r.err = nil, 0, nil
		if err := r.rc.Read(r.readFn); err != nil {
			// Closed while waiting.
			return r.s.buffer(), 0, err
		}
		return r.buf, r.n, r.err
	case r.wait != nil:
		return r.readWrapped()
	default:
		// Nothing to wait on: the buffer is held while waiting.
		buf = r.s.buffer()
		n, err = r.c.Read(r.space(buf))
		return buf, n, err
	}
}

// readWrapped is read for a connection that wraps a socket. It takes a
// buffer only when the wrapper has bytes for it already, or once the socket
// is readable; an idle connection holds none.
func (r *reader) readWrapped() (*[bufferSize]byte, int, error) {
	if !r.handshaken {
		r.handshaken = true
		// The read below that must not block would fail a TLS handshake
		// that has not happened yet, so it happens first, without a
		// buffer.
		if h, ok := r.c.(interface{ HandshakeContext(context.Context) error }); ok {
			if err := h.HandshakeContext(context.Background()); err != nil {
				return r.s.buffer(), 0, err
			}
		}
	}
	for {
		if r.pending {
			// A read with a deadline in the past returns what the
			// wrapper holds without touching the socket, or times out
			// at once.
			if buf, n, ok, err := r.readBy(aLongTimeAgo); ok {
				return buf, n, err
			}
			r.pending = false
		}
		if err := r.wait.Read(r.peekFn); err != nil {
			// Closed while waiting.
			return r.s.buffer(), 0, err
		}
		// The socket has bytes, or its end. They may be part of a TLS
		// record only: the read waits a little for the rest, then gives
		// the buffer back and waits on the socket again, so that a
		// client that stalls in the middle of a record holds none.
		if buf, n, ok, err := r.readBy(time.Now().Add(recordWait)); ok {
			r.pending = n > 0
			return buf, n, err
		}
	}
}

// recordWait is how long a read of a wrapped connection whose socket has
// bytes waits for the rest of a record with a buffer held.
const recordWait = 100 * time.Millisecond

// readBy reads the wrapper into a pooled buffer, waiting until deadline at
// most. ok is false, and no buffer held, when nothing came by then. A read
// that times out leaves a TLS or PROXY connection usable (crypto/tls keeps
// the part of a record it has, and does not make the error permanent).
func (r *reader) readBy(deadline time.Time) (buf *[bufferSize]byte, n int, ok bool, err error) {
	buf = r.s.buffer()
	r.c.SetReadDeadline(deadline)
	n, err = r.c.Read(r.space(buf))
	r.c.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if n == 0 {
			r.s.buffers.Put(buf)
			return nil, 0, false, nil
		}
		err = nil // TLS read on after a record, to look for an alert
	}
	return buf, n, true, err
}

// aLongTimeAgo is a deadline that has passed: a read with it only returns
// what is there already.
var aLongTimeAgo = time.Unix(1, 0)

// peek is called by the runtime's poller when the wrapped socket may be
// readable; it asks to wait while it is not.
func (r *reader) peek(fd uintptr) bool {
	return peekReadable(fd, r.peekBuf[:])
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
