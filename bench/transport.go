package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/target"
	"github.com/echod/echod/internal/wsclient"
)

// conn is a connection a session runs over: TCP, TLS over TCP, or a
// WebSocket (see wsConn), so that every mode but UDP runs over each of
// them with the same code.
type conn interface {
	net.Conn
	// CloseWrite ends what the client sends: a TCP half-close, a TLS
	// close_notify, or a WebSocket close frame.
	CloseWrite() error
}

// handshakeError is a failed TLS handshake or WebSocket upgrade on a
// connection that did connect.
type handshakeError struct {
	stage string // "tls handshake" or "websocket upgrade"
	err   error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// isTLSError reports whether err is a TLS handshake's failure, also under
// a WebSocket upgrade: a certificate that does not verify, an alert from
// the server, or a server that does not speak TLS.
func isTLSError(err error) bool {
	var cv *tls.CertificateVerificationError
	var ae tls.AlertError
	var rh tls.RecordHeaderError
	return errors.As(err, &cv) || errors.As(err, &ae) || errors.As(err, &rh) ||
		errors.Is(err, target.ErrEchoedHandshake) || errors.Is(err, target.ErrAnsweredHTTP)
}

// over puts the run's transport on c, a new TCP connection of worker w:
// nothing for TCP, a TLS handshake, or a WebSocket upgrade. On an error c
// is closed.
func (r *runner) over(ctx context.Context, w int, c *net.TCPConn) (conn, error) {
	switch r.cfg.Transport {
	case target.TLS:
		hctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
		defer cancel()
		tc, err := target.Handshake(hctx, c, r.cfg.TLS)
		if err != nil {
			c.Close()
			return nil, &handshakeError{stage: "tls handshake", err: err}
		}
		return tc, nil
	case target.WS, target.WSS:
		ws, err := wsclient.Client(ctx, c, r.cfg.url(), r.cfg.TLS, r.cfg.Timeout)
		if err != nil {
			return nil, &handshakeError{stage: "websocket upgrade", err: err}
		}
		// Connections start on alternate types, so that cycle's one
		// message per session alternates too.
		first := r.wsConns.Add(1) & 1
		return newWSConn(ws, r.cfg, first, func(err error) error { return r.mismatch(w, err) }), nil
	}
	return c, nil
}

// newStream returns the payload stream of seed: printable when WebSocket
// text messages carry it.
func (r *runner) newStream(seed uint64) *pattern.Stream {
	if r.cfg.textPayload() {
		return pattern.NewTextStream(seed)
	}
	return pattern.NewStream(seed)
}

// textPayload reports whether payloads must be valid UTF-8: some or all
// of the run's messages are WebSocket text messages. Alternating runs use
// printable bytes for binary messages too, so that one stream serves both.
func (c Config) textPayload() bool {
	return c.webSocket() && (c.MessageType == TextMessages || c.MessageType == AlternateMessages)
}

// url is the server's URL for TLS and WebSocket, "" for TCP and UDP.
func (c Config) url() string {
	if c.Transport == target.TCP || c.Transport == target.UDP {
		return ""
	}
	return fmt.Sprintf("%s://%s%s", c.Transport, c.Addr, c.Path)
}

// webSocket reports whether the run is over WebSocket.
func (c Config) webSocket() bool {
	return c.Transport == target.WS || c.Transport == target.WSS
}
