package proxied

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// maxV1 is the longest a v1 header may be, CRLF included.
const maxV1 = 107

// Conn is a connection whose PROXY header has been read. Its RemoteAddr and
// LocalAddr are the client's and the address it connected to, as the header
// gives them.
type Conn struct {
	// Conn is the socket, embedded as an interface rather than a
	// *net.TCPConn so that no method reads past rest (WriteTo, SyscallConn).
	net.Conn
	rest          *bufio.Reader // what arrived after the header, until read; nil once read
	remote, local net.Addr
}

// readHeader reads the PROXY header at the start of raw within timeout, and
// returns the connection that follows it.
func readHeader(raw net.Conn, timeout time.Duration) (*Conn, error) {
	if err := raw.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(raw, 256)
	if err := bufferV1(br); err != nil {
		return nil, fmt.Errorf("read PROXY header: %w", err)
	}
	h, err := proxyproto.Read(br)
	if err != nil {
		return nil, err
	}
	if err := raw.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	c := &Conn{Conn: raw, remote: raw.RemoteAddr(), local: raw.LocalAddr()}
	if br.Buffered() > 0 {
		c.rest = br
	}
	// A header that names a TCP client gives its address. One that names
	// none (LOCAL, as a proxy's health check sends; UNKNOWN) or a client
	// over another transport (UDP, a Unix socket) leaves the proxy's:
	// such an address would escape the per-IP limit, which counts TCP
	// clients by IP (20 of 20 connections "from" one UDP client were
	// served with a limit of 5). Rejecting them instead would break a
	// proxy that fronts a Unix socket for no gain: counted under the
	// proxy's address, they share one budget and are still served.
	if !h.Command.IsLocal() && h.TransportProtocol.IsStream() && (h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		if src, ok := h.SourceAddr.(*net.TCPAddr); ok {
			c.remote = src
		}
		if dst, ok := h.DestinationAddr.(*net.TCPAddr); ok {
			c.local = dst
		}
	}
	return c, nil
}

// bufferV1 makes sure that a v1 header, a line, is buffered whole before it
// is parsed, however many reads it takes within the header timeout: the
// parser refuses a line that did not arrive in one read. A v2 header has its
// length up front, and the parser reads it in as many reads as it takes.
func bufferV1(br *bufio.Reader) error {
	first, err := br.Peek(1)
	if err != nil || first[0] != 'P' {
		return err
	}
	for n := 2; n <= maxV1; n++ {
		b, err := br.Peek(n)
		if err != nil {
			return err
		}
		if b[n-1] == '\n' {
			break
		}
	}
	return nil
}

// Read reads what arrived after the header first, then from the socket.
func (c *Conn) Read(p []byte) (int, error) {
	if c.rest == nil {
		return c.Conn.Read(p)
	}
	n, err := c.rest.Read(p)
	if c.rest.Buffered() == 0 {
		c.rest = nil // the buffer goes; an idle connection holds none
	}
	return n, err
}

// NetConn returns the socket under the header, as crypto/tls's Conn does,
// so that the echo server can wait on it without holding a buffer and see
// a slow reader's progress. Bytes that arrived after the header and are
// not read yet are in c, not in the socket.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Detach returns the socket under the header and the bytes that arrived
// after the header and were not read yet, which come before the socket's:
// for a server that serves the connection from then on without c (echo's
// event loops). c must not be used after.
func (c *Conn) Detach() (sock net.Conn, buffered []byte) {
	if c.rest != nil {
		buffered, _ = c.rest.Peek(c.rest.Buffered())
		c.rest = nil
	}
	return c.Conn, buffered
}

// RemoteAddr returns the client's address, as the header gives it.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr returns the address the client connected to, as the header
// gives it.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// CloseWrite shuts down the writing side of the socket, where it has one
// (TCP, Unix): the client reads EOF after the echo.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// SetLinger sets a TCP socket's SO_LINGER, as net.TCPConn's does: 0 makes
// Close reset the connection.
func (c *Conn) SetLinger(sec int) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetLinger(sec)
	}
	return errors.ErrUnsupported
}
