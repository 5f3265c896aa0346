package echo

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// bufferSize is how much of a client's data a connection holds at most. The
// write of one read completes before the next read starts, so a client that
// sends faster than it reads fills the kernel's socket buffers and then
// meets TCP backpressure; the server never holds more than this.
const bufferSize = 32 << 10

// conn is a connection served on its own goroutine. The server tracks it by
// pointer, so that Close can close it: a net.Conn need not be comparable.
type conn struct {
	net.Conn
	source netip.Addr // as admission counted it; the zero Addr if not IP
}

// serveConn is the goroutine engine, and the specification of echo that the
// event loops must agree with: read what has arrived, write back exactly
// those bytes, repeat, until the client half-closes, resets or goes away, a
// session limit ends the connection, or Shutdown or Close does. Then it
// closes c and reports why it ended.
func (s *Server) serveConn(c *conn) {
	start := time.Now()
	p := s.sessionPolicy()
	d := newDeadline(c, p, start)
	r := s.newReader(c) // see idlebuffer.go
	var in, out int64
	var err error
	for err == nil {
		d.progress()
		var data []byte
		data, err = r.read(p.readLimit(in))
		if len(data) > 0 {
			in += int64(len(data))
			s.counts.tcpBytesIn.Add(uint64(len(data)))
			// Write back the bytes read, never the whole buffer: the
			// classic bug that pads every reply with stale bytes.
			n, werr := d.write(data)
			out += int64(n)
			s.counts.tcpBytesOut.Add(uint64(n))
			if werr != nil {
				err = werr
			} else if p.MaxBytes > 0 && in >= p.MaxBytes {
				err = errSessionBytes
			}
		}
		r.release()
	}
	// io.EOF is the client's half-close: everything it sent has been
	// written back above, so closing now loses nothing.
	c.Close()
	reason, err := d.endReason(err)
	s.connEnded(c, c.RemoteAddr().String, ended{
		source: c.source, in: in, out: out, duration: time.Since(start),
		reason: reason, err: err,
	})
}

// errSessionBytes ends a connection that has sent MaxSessionBytes.
var errSessionBytes = errors.New("session byte limit reached")

// sessionPolicy is what a connection may do once admitted: plain values that
// any engine serving the connection applies. Zero fields mean no limit.
type sessionPolicy struct {
	IdleTimeout time.Duration // no progress in either direction for this long ends it
	MaxDuration time.Duration // it ends this long after it was accepted
	MaxBytes    int64         // it ends once the client has sent this many bytes, all echoed
}

// longest is what a longer time limit is taken as: "very long", and far
// enough from the largest time.Duration that the arithmetic on it (an idle
// timeout plus an eighth) cannot overflow into the past.
const longest = 100 * 365 * 24 * time.Hour

func (s *Server) sessionPolicy() sessionPolicy {
	return sessionPolicy{
		IdleTimeout: max(min(s.IdleTimeout, longest), 0),
		MaxDuration: max(min(s.MaxSessionDuration, longest), 0),
		MaxBytes:    max(s.MaxSessionBytes, 0),
	}
}

// readLimit is the most a connection that has sent in bytes may read next:
// no more than MaxBytes allows, so that exactly the allowed bytes are echoed.
func (p sessionPolicy) readLimit(in int64) int {
	if p.MaxBytes == 0 {
		return bufferSize
	}
	return int(min(p.MaxBytes-in, bufferSize))
}

// deadline applies a sessionPolicy's time limits to a blocking connection
// with a single deadline for both directions, since reads and writes
// alternate. Moving a deadline costs a timer update, so for the idle timeout
// it is moved only once an eighth of the timeout has passed since it was
// last set: a connection is closed between IdleTimeout and 9/8 of it after
// its last progress, and a busy one pays for a timer update now and then
// rather than per read.
type deadline struct {
	c           net.Conn
	idle, slack time.Duration
	end         time.Time // when MaxDuration runs out; zero: never
	armed       time.Time // when the deadline was last moved
}

func newDeadline(c net.Conn, p sessionPolicy, start time.Time) *deadline {
	d := &deadline{c: c, idle: p.IdleTimeout, slack: p.IdleTimeout / 8}
	if p.MaxDuration > 0 {
		d.end = start.Add(p.MaxDuration)
		if d.idle == 0 {
			c.SetDeadline(d.end)
		}
	}
	return d
}

// progress records that the connection moved bytes just now, pushing the
// idle deadline out if it is due.
func (d *deadline) progress() {
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
	d.c.SetDeadline(t)
}

// write writes all of p. A write that times out having taken some bytes is
// progress (a slow reader), so it goes on; one that took none ends the
// connection.
func (d *deadline) write(p []byte) (int, error) {
	var written int
	for {
		n, err := d.c.Write(p[written:])
		written += n
		if err == nil || n == 0 || d.idle == 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			return written, err
		}
		d.progress()
	}
}

// endReason names why a connection ended, given the error that ended its
// loop, and returns that error too when it is unexpected.
func (d *deadline) endReason(err error) (Reason, error) {
	switch {
	case errors.Is(err, errSessionBytes):
		return ReasonMaxSessionBytes, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !d.end.IsZero() && !time.Now().Before(d.end) {
			return ReasonMaxSessionDuration, nil
		}
		return ReasonIdleTimeout, nil
	case errors.Is(err, io.EOF):
		return endEOF, nil
	case errors.Is(err, net.ErrClosed):
		return endClosed, nil
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT):
		return endReset, nil
	}
	return endFailed, err
}
