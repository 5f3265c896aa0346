package netpath

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/echod/echod/internal/target"
	"github.com/echod/echod/internal/wsclient"
)

// stream is one connection to the echo server, TCP, TLS or WebSocket, as
// a byte stream.
type stream struct {
	net.Conn                // what bytes are written to and read from
	tcp      *net.TCPConn   // the socket under it
	tls      *tls.Conn      // nil unless TLS
	ws       *wsclient.Conn // nil unless WebSocket
	pending  []byte         // the rest of a WebSocket message read
	timing   Timing         // how long reaching the server took
	stop     func() bool    // unties the connection from the dial's ctx
}

// errNoHalfClose is the half-close of a stream that has none (WebSocket).
var errNoHalfClose = errors.New("a WebSocket has no half-close")

// dialer opens streams to the configured target.
type dialer struct{ cfg Config }

// halfCloses reports whether the target's streams can half-close.
func (d dialer) halfCloses() bool { return !d.cfg.Target.IsWebSocket() }

// dial connects to the target; every read and write fails once ctx ends.
func (d dialer) dial(ctx context.Context) (*stream, error) {
	t := d.cfg.Target
	if t.IsWebSocket() {
		return d.dialWebSocket(ctx)
	}
	addr := t.Addr()
	start := time.Now()
	var nd net.Dialer
	ctx2, cancel := context.WithTimeout(ctx, d.cfg.Patience)
	defer cancel()
	c, err := nd.DialContext(ctx2, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	s := &stream{Conn: c, tcp: c.(*net.TCPConn)}
	s.timing.Connect = time.Since(start)
	s.stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	if t.Transport == target.TLS {
		start := time.Now()
		tc, err := target.Handshake(ctx2, c, d.tlsConfig())
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", t, err)
		}
		s.timing.Handshake = time.Since(start)
		s.Conn, s.tls = tc, tc
	}
	return s, nil
}

func (d dialer) tlsConfig() *tls.Config {
	if d.cfg.TLS != nil {
		return d.cfg.TLS
	}
	return &tls.Config{InsecureSkipVerify: true, ServerName: d.cfg.Target.Host}
}

func (d dialer) dialWebSocket(ctx context.Context) (*stream, error) {
	start := time.Now()
	ws, err := wsclient.Dial(ctx, d.cfg.Target.URL(), d.tlsConfig(), d.cfg.Patience)
	if err != nil {
		return nil, err
	}
	ws.NetConn().SetDeadline(time.Time{}) // Dial's deadline was for the upgrade
	s := &stream{Conn: ws.NetConn(), ws: ws, stop: func() bool { return true }}
	s.timing.Upgrade = time.Since(start) // dial, TLS and upgrade: wsclient does them as one
	if tc, ok := s.Conn.(*tls.Conn); ok {
		s.tls = tc
	}
	s.tcp = tcpOf(s.Conn)
	return s, nil
}

// tcpOf returns the TCP socket under c, or nil.
func tcpOf(c net.Conn) *net.TCPConn {
	for range 8 {
		switch w := c.(type) {
		case *net.TCPConn:
			return w
		case interface{ NetConn() net.Conn }:
			c = w.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// Write sends p: on a WebSocket as one binary message.
func (s *stream) Write(p []byte) (int, error) {
	if s.ws == nil {
		return s.Conn.Write(p)
	}
	if err := s.ws.WriteMessage(wsclient.Binary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read reads the echo: on a WebSocket, the bytes of its messages in turn.
func (s *stream) Read(p []byte) (int, error) {
	if s.ws == nil {
		return s.Conn.Read(p)
	}
	for len(s.pending) == 0 {
		op, msg, _, err := s.ws.ReadMessage()
		if err != nil {
			var closed *wsclient.ClosedError
			if errors.As(err, &closed) {
				return 0, io.EOF
			}
			return 0, err
		}
		if op == wsclient.Binary || op == wsclient.Text {
			s.pending = msg
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// CloseWrite half-closes the stream.
func (s *stream) CloseWrite() error {
	if s.ws != nil {
		return errNoHalfClose
	}
	if s.tls != nil {
		return s.tls.CloseWrite()
	}
	return s.tcp.CloseWrite()
}

// Abort closes the stream with a reset, so that what it still had to send
// is dropped rather than delivered: a bulk echo that is over must not take
// the path from the next measurement.
func (s *stream) Abort() error {
	if s.tcp != nil {
		s.tcp.SetLinger(0)
	}
	return s.Close()
}

// Close closes the stream at once.
func (s *stream) Close() error {
	s.stop()
	if s.ws != nil {
		return s.ws.Close()
	}
	return s.Conn.Close()
}
