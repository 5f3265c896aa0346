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

// serveConn echoes c until the client half-closes, resets or goes away, then
// closes it. It returns only after c is closed.
func (s *Server) serveConn(c net.Conn) {
	start := time.Now()
	// A pointer to an array keeps the pool free of allocations.
	buf, _ := s.buffers.Get().(*[bufferSize]byte)
	if buf == nil {
		buf = new([bufferSize]byte)
	}
	defer s.buffers.Put(buf)

	var in, out int64
	reason := "eof"
	for {
		n, err := c.Read(buf[:])
		if n > 0 {
			in += int64(n)
			// Write only the n bytes read, never the whole buffer: the
			// classic bug that pads every reply with stale bytes.
			w, werr := c.Write(buf[:n])
			out += int64(w)
			if werr != nil {
				reason = endReason(werr)
				break
			}
		}
		if err != nil {
			// io.EOF is the client's half-close: everything it sent has
			// been written back above, so closing now loses nothing.
			reason = endReason(err)
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

// endReason names why a connection ended, for the log.
func endReason(err error) string {
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
