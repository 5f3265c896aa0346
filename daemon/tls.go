package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// handshakeListener serves TLS on the connections of an inner listener, and
// gives each handshake a time limit. The handshake runs on the goroutine
// that serves the connection, on its first read or write, so handshakes are
// never serialised in Accept, and a connection in its handshake counts
// against the server's limits like any other.
type handshakeListener struct {
	net.Listener
	config  *tls.Config
	timeout time.Duration
}

func newHandshakeListener(inner net.Listener, config *tls.Config, timeout time.Duration) net.Listener {
	return &handshakeListener{Listener: inner, config: config, timeout: timeout}
}

// Accept returns the next connection, its TLS handshake still to come.
func (l *handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &handshakeConn{Conn: tls.Server(c, l.config), timeout: l.timeout}, nil
}

// errHandshakeTimeout ends a connection whose TLS handshake took too long;
// its text is the end reason in the connection's log line.
var errHandshakeTimeout = errors.New("tls-handshake-timeout")

// handshakeConn is a TLS connection whose handshake must finish within
// timeout. The deadline is a context rather than the socket's deadlines,
// which the echo server sets for its idle timeout, overriding any set here.
type handshakeConn struct {
	*tls.Conn
	timeout time.Duration
	done    atomic.Bool // the handshake succeeded
}

func (c *handshakeConn) handshake() error {
	return c.HandshakeContext(context.Background())
}

// HandshakeContext runs the handshake within the time limit, also when the
// echo server asks for it directly (it does, before it waits for data
// without a buffer).
func (c *handshakeConn) HandshakeContext(ctx context.Context) error {
	if c.done.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// On the timeout, HandshakeContext closes the connection.
	err := c.Conn.HandshakeContext(ctx)
	switch {
	case err == nil:
		c.done.Store(true)
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return errHandshakeTimeout
	default:
		return fmt.Errorf("tls handshake: %w", err)
	}
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *handshakeConn) Write(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}
