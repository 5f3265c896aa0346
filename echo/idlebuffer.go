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

// reader reads a connection into pooled buffers, and optimises one thing:
// it waits for data before it takes a buffer, and serveConn gives it back
// once its bytes are echoed, so an idle connection holds none (unless it
// has no socket to wait on, such as net.Pipe).
type reader struct {
	s   *Server
	c   net.Conn
	rc  syscall.RawConn   // c is a plain socket, read directly; nil: read through c
	buf *[bufferSize]byte // what read returned is in it, until release

	wait       syscall.RawConn // a wrapper's socket, waited on before a buffer is taken
	handshaken bool            // a TLS handshake, if any, is done
	// pending says the wrapper may hold bytes it has read from the socket
	// (the rest of a TLS record), which a wait on the socket would not see.
	pending bool
	peekBuf [1]byte

	// The arguments and results of readRaw and peekFn, which the poller
	// calls; fields and funcs made once rather than closures per read, so
	// that a read allocates nothing.
	limit  int
	n      int
	err    error
	readFn func(fd uintptr) bool
	peekFn func(fd uintptr) bool
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
	if _, ok := c.(*net.TCPConn); ok {
		r.rc, r.readFn = rc, r.readRaw
	} else {
		r.wait, r.pending = rc, true
		r.peekFn = func(fd uintptr) bool { return peekReadable(fd, r.peekBuf[:]) }
	}
	return r
}

// read waits for data and returns up to limit bytes of it, valid until
// release, or the error that ended the wait (io.EOF on a half-close).
func (r *reader) read(limit int) ([]byte, error) {
	r.limit = limit
	switch {
	case r.rc != nil:
		r.n, r.err = 0, nil
		if err := r.rc.Read(r.readFn); err != nil {
			return nil, err // closed while waiting
		}
		if r.buf == nil {
			return nil, r.err
		}
		return r.buf[:r.n], r.err
	case r.wait != nil:
		return r.readWrapped()
	}
	r.buf = r.s.buffer()
	n, err := r.c.Read(r.buf[:limit])
	return r.buf[:n], err
}

// release gives the buffer of the last read back to the pool.
func (r *reader) release() {
	if r.buf != nil {
		r.s.buffers.Put(r.buf)
		r.buf = nil
	}
}

// readRaw is called by the runtime's poller when the socket may be
// readable; with nothing to read it gives the buffer back and asks to wait.
func (r *reader) readRaw(fd uintptr) bool {
	r.buf = r.s.buffer()
	for {
		n, err := rawRead(fd, r.buf[:r.limit])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			r.release()
			return false
		case err != nil:
			r.err = err
		case n == 0:
			r.err = io.EOF
		default:
			r.n = n
			return true
		}
		r.release()
		return true
	}
}

// readWrapped is read for a connection that wraps a socket.
func (r *reader) readWrapped() ([]byte, error) {
	if !r.handshaken {
		r.handshaken = true
		// A read that must not block would fail a TLS handshake, so it
		// happens first, without a buffer.
		if h, ok := r.c.(interface{ HandshakeContext(context.Context) error }); ok {
			if err := h.HandshakeContext(context.Background()); err != nil {
				return nil, err
			}
		}
	}
	for {
		if r.pending {
			// A deadline in the past returns only what the wrapper holds.
			if data, ok, err := r.readBy(time.Unix(1, 0)); ok {
				return data, err
			}
			r.pending = false
		}
		if err := r.wait.Read(r.peekFn); err != nil {
			return nil, err // closed while waiting
		}
		// The bytes may be part of a TLS record only: the read waits a
		// little for the rest, then gives the buffer back and waits on the
		// socket again, so a client stalled mid-record holds none.
		if data, ok, err := r.readBy(time.Now().Add(recordWait)); ok {
			r.pending = len(data) > 0
			return data, err
		}
	}
}

// recordWait is how long a wrapped read waits for the rest of a record
// with a buffer held.
const recordWait = 100 * time.Millisecond

// readBy reads the wrapper into a pooled buffer by deadline; ok is false,
// and no buffer held, when nothing came. A timed-out read leaves a TLS
// connection usable: crypto/tls keeps the part of a record it has.
func (r *reader) readBy(deadline time.Time) (data []byte, ok bool, err error) {
	r.buf = r.s.buffer()
	r.c.SetReadDeadline(deadline)
	n, err := r.c.Read(r.buf[:r.limit])
	r.c.SetReadDeadline(time.Time{})
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if n == 0 {
			r.release()
			return nil, false, nil
		}
		err = nil // TLS read on after a record, to look for an alert
	}
	return r.buf[:n], true, err
}

// buffer returns a pooled buffer; a pointer to an array puts without
// allocating.
func (s *Server) buffer() *[bufferSize]byte {
	if buf, ok := s.buffers.Get().(*[bufferSize]byte); ok {
		return buf
	}
	return new([bufferSize]byte)
}
