package echo

import (
	"io"
	"net"
	"syscall"
)

// reader reads a connection into buffers from the server's pool, and
// optimises one thing: on a plain TCP socket it waits for data before it
// takes a buffer, and serveConn gives the buffer back as soon as its bytes
// are echoed, so an idle connection holds none. Any other connection (TLS
// reads through buffers of its own) takes its buffer before it waits.
type reader struct {
	s   *Server
	c   net.Conn
	rc  syscall.RawConn   // nil: read c with a buffer taken beforehand
	buf *[bufferSize]byte // what read returned is in it, until release

	// The arguments and results of readRaw, which rc.Read calls; fields
	// rather than captured variables, so that a read allocates nothing.
	limit  int
	n      int
	err    error
	readFn func(fd uintptr) bool
}

func (s *Server) newReader(c *conn) *reader {
	r := &reader{s: s, c: c}
	if tc, ok := c.Conn.(*net.TCPConn); ok && rawReadSupported {
		if rc, err := tc.SyscallConn(); err == nil {
			r.rc = rc
			r.readFn = r.readRaw
		}
	}
	return r
}

// read waits for data and returns up to limit bytes of it, or the error that
// ended the wait (io.EOF on the client's half-close). The bytes stay valid
// until release.
func (r *reader) read(limit int) ([]byte, error) {
	if r.rc == nil {
		r.buf = r.s.buffer()
		n, err := r.c.Read(r.buf[:limit])
		return r.buf[:n], err
	}
	r.limit, r.n, r.err = limit, 0, nil
	if err := r.rc.Read(r.readFn); err != nil {
		return nil, err // closed, or past a deadline, while waiting
	}
	if r.buf == nil {
		return nil, r.err
	}
	return r.buf[:r.n], r.err
}

// release gives the buffer of the last read back to the pool.
func (r *reader) release() {
	if r.buf != nil {
		r.s.buffers.Put(r.buf)
		r.buf = nil
	}
}

// readRaw is called by the runtime's poller when the socket may be
// readable: it takes a buffer and reads, or gives the buffer back and asks
// to wait when there turns out to be nothing to read.
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

// buffer returns a pooled buffer. A pointer to an array keeps the pool free
// of allocations.
func (s *Server) buffer() *[bufferSize]byte {
	if buf, ok := s.buffers.Get().(*[bufferSize]byte); ok {
		return buf
	}
	return new([bufferSize]byte)
}
