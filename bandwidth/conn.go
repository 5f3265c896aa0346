package bandwidth

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Listener returns ln with every connection it accepts throttled by l, as
// Conn: for servers that write through a net.Conn, such as net/http. A nil
// l returns ln itself.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	if l == nil {
		return ln
	}
	return &listener{Listener: ln, l: l}
}

type listener struct {
	net.Listener
	l *Limiter
}

func (ln *listener) Accept() (net.Conn, error) {
	c, err := ln.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var addr netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr()
	}
	return ln.l.Conn(c, addr), nil
}

// Conn is a net.Conn whose writes wait for their budget: a Write returns
// once all of it has gone out at the rates allowed, so a server that reads
// the next request only after answering the last one meets backpressure.
// Reads are not limited: what costs is what is sent. Close ends a wait at
// once, and a write deadline ends it when due.
type Conn struct {
	net.Conn
	flow     *Flow
	deadline atomic.Int64 // of writes, Unix nanoseconds; 0: none
	closed   chan struct{}
	once     sync.Once
}

// Conn returns c throttled by l as a connection from addr. Closing the
// Conn closes c and its Flow.
func (l *Limiter) Conn(c net.Conn, addr netip.Addr) *Conn {
	return &Conn{Conn: c, flow: l.Open(time.Now(), addr), closed: make(chan struct{})}
}

// writeChunk is how much a Conn writes at a time, so that a large write
// is paced rather than let through in one burst after one long wait.
const writeChunk = 16 << 10

// Write writes p, each piece once its budget allows.
func (c *Conn) Write(p []byte) (int, error) {
	var written int
	for len(p) > 0 {
		chunk := p[:min(len(p), writeChunk)]
		if err := c.wait(c.flow.Spend(time.Now(), len(chunk))); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// wait waits for d, or less if the Conn is closed or its write deadline
// comes first.
func (c *Conn) wait(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	timeout := false
	if dl := c.deadline.Load(); dl != 0 {
		if left := time.Until(time.Unix(0, dl)); left < d {
			d, timeout = max(left, 0), true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		if timeout {
			return &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
		}
		return nil
	case <-c.closed:
		return net.ErrClosed
	}
}

// SetDeadline and SetWriteDeadline also bound the waits of Write.
func (c *Conn) SetDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline, which bounds Write's waits too.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.setWriteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *Conn) setWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
}

// Close closes the connection, ending a Write that waits.
func (c *Conn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.flow.Close()
	})
	return c.Conn.Close()
}

// Release gives back c's hold on its budgets and returns the connection
// under it, for a server that throttles it from now on by the same Limiter
// (echo.Server.Adopt does): its bytes are charged once. c must not be used
// after.
func (c *Conn) Release() net.Conn {
	c.once.Do(func() {
		close(c.closed)
		c.flow.Close()
	})
	return c.Conn
}

// CloseWrite shuts down the writing side, if the connection under c can:
// net/http does after its last response, so the client gets all of it
// before the connection closes.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// NetConn returns the connection under c, as crypto/tls's Conn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }
