package target

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// ErrEchoedHandshake means that a TLS client hello came straight back: the
// server is a plain echo server, not TLS.
var ErrEchoedHandshake = errors.New("the server echoed the TLS handshake: it is a plain echo server, not TLS")

// ErrAnsweredHTTP means that the server answered the TLS client hello with
// a plain HTTP response, as a web server does to bytes it cannot parse.
var ErrAnsweredHTTP = errors.New("the server answered the TLS handshake with plain HTTP: it is a web server, not TLS")

// Handshake runs a TLS client handshake with cfg on c, a connection to a
// server under test. It returns ErrEchoedHandshake, wrapped, when the
// server sent the client's hello straight back, and ErrAnsweredHTTP when
// it answered in plain HTTP. The returned connection's
// NetConn has a NetConn method too, which returns c.
func Handshake(ctx context.Context, c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	rec := &recorder{Conn: c}
	tc := tls.Client(rec, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if len(rec.read) >= 5 && bytes.HasPrefix(rec.written, rec.read[:5]) {
			return nil, ErrEchoedHandshake
		}
		if bytes.HasPrefix(rec.read, []byte("HTTP/")) {
			return nil, ErrAnsweredHTTP
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	// Reads and writes go straight through from here on; the connection
	// belongs to its new reader and writer goroutines.
	rec.done = true
	return tc, nil
}

// recorder keeps the first bytes written and read on a connection during
// a handshake, to recognise an echoed hello.
type recorder struct {
	net.Conn
	written, read []byte
	done          bool
}

// NetConn returns the connection under the recorder.
func (r *recorder) NetConn() net.Conn { return r.Conn }

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

// SpeaksTLS reports whether the server at addr completes a TLS handshake
// within ctx: the explanation for a plain session that the server closed
// without a byte.
func SpeaksTLS(ctx context.Context, addr string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// Only whether it speaks TLS matters, not who it is.
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: "echod-probe"})
	return tc.HandshakeContext(ctx) == nil
}

// ClientTLS says how a tool talks TLS to a server under test; the tools'
// -ca and -sni flags set it. The zero value takes any certificate: a local
// test server's is most often self-signed.
type ClientTLS struct {
	// CAFile names a PEM file of CA certificates to verify the server's
	// certificate against; empty: the certificate is not verified.
	CAFile string
	// ServerName is the name sent in the client hello (SNI; Go sends
	// none for an IP address) and, with CAFile, the name the certificate
	// must carry; empty: the host.
	ServerName string
}

// Config returns the client configuration for the server at host.
func (o ClientTLS) Config(host string) (*tls.Config, error) {
	name := o.ServerName
	if name == "" {
		name = host
	}
	if o.CAFile == "" {
		// The name still goes in the hello: a server may pick its
		// certificate by it.
		return &tls.Config{InsecureSkipVerify: true, ServerName: name}, nil
	}
	pem, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-ca %s: no PEM certificate in it", o.CAFile)
	}
	return &tls.Config{RootCAs: pool, ServerName: name}, nil
}
