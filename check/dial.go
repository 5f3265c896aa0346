package check

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
)

// conn is a stream connection to the server under test, plain TCP or TLS:
// what the checks need of it is a half-close.
type conn interface {
	net.Conn
	CloseWrite() error
}

// tcpOf returns the TCP connection under c, for socket options.
func tcpOf(c conn) *net.TCPConn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn().(*recorder).Conn.(*net.TCPConn)
	}
	return c.(*net.TCPConn)
}

// dial connects to the target's TCP address (over TLS when the target has a
// TLS configuration) and ties the connection to ctx: when ctx ends, every
// read and write on it fails at once. The caller calls the returned stop
// when done, then closes the connection.
func (t *Target) dial(ctx context.Context, network string) (conn, func() bool, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, t.Addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("connect: nothing is listening on %s", t.Addr)
		}
		return nil, nil, fmt.Errorf("connect to %s: %w", t.Addr, bareNetError(err))
	}
	var cc conn = c.(*net.TCPConn)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	if t.TLS != nil {
		tc, err := handshake(ctx, c, t.TLS, t.Addr)
		if err != nil {
			stop()
			c.Close()
			return nil, nil, err
		}
		cc = tc
	}
	return cc, stop, nil
}

// bareNetError strips the operation and addresses from a dial error, which
// the caller states in its own words.
func bareNetError(err error) error {
	var opErr *net.OpError
	var sysErr *os.SyscallError
	switch {
	case errors.As(err, &sysErr):
		return sysErr.Err
	case errors.As(err, &opErr):
		return opErr.Err
	}
	return err
}

// handshake runs a TLS client handshake on c, and tells a plain echo
// server, which sends the client's hello straight back, from other
// failures.
func handshake(ctx context.Context, c net.Conn, cfg *tls.Config, addr string) (*tls.Conn, error) {
	rec := &recorder{Conn: c}
	tc := tls.Client(rec, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if len(rec.read) >= 5 && bytes.HasPrefix(rec.written, rec.read[:5]) {
			// The server is a plain echo server.
			return nil, &protocolError{"the server echoed the TLS handshake: it is a plain echo server, not TLS; check it as " + addr + ", without tls://"}
		}
		return nil, fmt.Errorf("TLS handshake: %w", bareNetError(err))
	}
	// Reads and writes go straight to c from here on.
	rec.done = true
	return tc, nil
}

// recorder keeps the first bytes written and read on a connection, to
// recognise an echoed handshake.
type recorder struct {
	net.Conn
	written, read []byte
	done          bool
}

func (r *recorder) Write(p []byte) (int, error) {
	if !r.done && len(r.written) < 64 {
		r.written = append(r.written, p[:min(len(p), 64)]...)
	}
	return r.Conn.Write(p)
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if !r.done && len(r.read) < 64 {
		r.read = append(r.read, p[:min(n, 64)]...)
	}
	return n, err
}

// speaksTLS reports whether the server at addr completes a TLS handshake:
// the explanation for a plain echo session that a server closed without a
// byte.
func speaksTLS(ctx context.Context, addr string, patience time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, patience)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// Only the handshake is wanted, not who the server is.
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "echod-check"})
	return tc.HandshakeContext(ctx) == nil
}
