package echo

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// bufferSize is how much of a client's data a connection holds at most: the
// next read waits for the write of the last, so a client that sends faster
// than it reads meets TCP backpressure.
const bufferSize = 32 << 10

// conn is a connection served on its own goroutine, tracked by pointer: a
// net.Conn need not be comparable.
type conn struct {
	net.Conn
	source netip.Addr // as admission counted it; the zero Addr if not IP

	// With Server.Bandwidth: closed by Close, or when the watchdog ends
	// the connection, to end a pause for the budget at once.
	stop     chan struct{}
	stopOnce sync.Once
}

// Close closes the connection, ending a pause.
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
// agree with: read what has arrived, write back exactly those bytes, repeat,
// until the client half-closes or goes away, or a limit, Shutdown or Close
// ends the connection. Then it closes c and reports why it ended.
func (s *Server) serveConn(c *conn) {
	start := time.Now()
	p := s.sessionPolicy()
	sock := socketOf(c.Conn)
	w := startWatchdog(c.Conn, sock, p, start) // the time limits: watchdog.go
	defer w.stop()
	// The bandwidth budgets: a connection reads about what it may send
	// now, and waits before sending what takes it past its budget,
	// reading nothing meanwhile.
	flow := s.Bandwidth.Open(start, c.source)
	defer flow.Close()
	if flow != nil {
		w.mu.Lock()
		w.onClose = c.endPause
		w.mu.Unlock()
	}
	r := s.newReader(c.Conn, sock) // an idle connection holds no buffer: idlebuffer.go
	var in, out int64
	var err error
	for err == nil {
		limit := p.readLimit(in)
		if flow != nil {
			limit = min(limit, flow.Allow(time.Now()))
		}
		var data []byte
		data, err = r.read(limit)
		if len(data) > 0 {
			in += int64(len(data))
			w.moved.Add(int64(len(data)))
			s.counts.tcpBytesIn.Add(uint64(len(data)))
			if wait := flow.Spend(time.Now(), len(data)); wait > 0 && !c.pause(wait) {
				r.release()
				err = net.ErrClosed
				break
			}
			// Write back the bytes read, never the whole buffer: the
			// classic bug that pads every reply with stale bytes.
			n, werr := w.write(c.Conn, data)
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
	if err == errSessionBytes {
		s.discardAfterLimit(c.Conn, sock, r, w)
	}
	// io.EOF is the client's half-close: everything it sent has been
	// written back above, so closing now loses nothing.
	c.Close()
	reason, err := endReason(err, w)
	s.connEnded(c, c.RemoteAddr().String, ended{
		source: c.source, in: in, out: out, duration: time.Since(start),
		reason: reason, err: err,
	})
}

// errSessionBytes ends a connection that has sent MaxSessionBytes.
var errSessionBytes = errors.New("session byte limit reached")

// endReason names why a connection ended, given the error that ended its
// loop, which it returns when unexpected.
func endReason(err error, w *watchdog) (Reason, error) {
	if err == errSessionBytes {
		return ReasonMaxSessionBytes, nil
	}
	if r, ok := w.ended(); ok {
		return r, nil
	}
	switch {
	case errors.Is(err, io.EOF):
		return endEOF, nil
	case errors.Is(err, net.ErrClosed):
		return endClosed, nil
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ETIMEDOUT):
		return endReset, nil
	}
	return endFailed, err
}

// sessionPolicy is the limits both engines apply to an admitted connection.
// Zero fields mean no limit.
type sessionPolicy struct {
	IdleTimeout time.Duration // no progress in either direction for this long ends it
	MaxDuration time.Duration // it ends this long after it was accepted
	MaxBytes    int64         // it ends once the client has sent this many bytes, all echoed
}

// longest is what a longer time limit is taken as: far enough from the
// largest time.Duration that adding to it cannot overflow into the past.
const longest = 100 * 365 * 24 * time.Hour

func (s *Server) sessionPolicy() sessionPolicy {
	return sessionPolicy{
		IdleTimeout: max(min(s.IdleTimeout, longest), 0),
		MaxDuration: max(min(s.MaxSessionDuration, longest), 0),
		MaxBytes:    max(s.MaxSessionBytes, 0),
	}
}

// readLimit is the most a connection that has sent in bytes may read next,
// so that exactly MaxBytes are echoed.
func (p sessionPolicy) readLimit(in int64) int {
	if p.MaxBytes == 0 {
		return bufferSize
	}
	return int(min(p.MaxBytes-in, bufferSize))
}

// limitLinger is how long a connection past MaxSessionBytes stays open once
// the client stops taking its echo: see discardAfterLimit.
const limitLinger = 2 * time.Second

// discardAfterLimit ends a connection that has echoed its MaxSessionBytes
// without losing that echo, which closing a socket with unread input would
// (the kernel resets it): the write side is shut down, and input thrown away
// until the client closes its side, or takes no echo for limitLinger.
func (s *Server) discardAfterLimit(c net.Conn, sock socket, r *reader, w *watchdog) {
	w.linger(limitLinger)
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
