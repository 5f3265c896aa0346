package check

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/echod/echod/internal/target"
)

// conn is a stream connection to the server under test, plain TCP or TLS:
// what the checks need of it is a half-close.
type conn interface {
	net.Conn
	CloseWrite() error
}

// tcpOf returns the TCP connection under c, for socket options, or nil
// if there is none.
func tcpOf(c net.Conn) *net.TCPConn {
	for {
		switch cc := c.(type) {
		case *net.TCPConn:
			return cc
		case interface{ NetConn() net.Conn }:
			c = cc.NetConn()
		default:
			return nil
		}
	}
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
	var cc conn = counted{conn: c.(*net.TCPConn), n: &t.received}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	if t.TLS != nil {
		tc, err := handshake(ctx, cc, t.TLS, t.Addr)
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
	tc, err := target.Handshake(ctx, c, cfg)
	switch {
	case errors.Is(err, target.ErrEchoedHandshake):
		return nil, &protocolError{fmt.Sprintf("%v; check it as %s, without tls://", err, addr)}
	case err != nil:
		return nil, err
	}
	return tc, nil
}
