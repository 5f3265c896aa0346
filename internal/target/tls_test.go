package target

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// handshakeWith dials addr and runs Handshake on it, with a deadline.
func handshakeWith(t *testing.T, addr string) error {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tc, err := Handshake(ctx, c, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		tc.Close()
	}
	return err
}

// A web server on a tls:// address answers the client hello with an HTTP
// 400: the error says it is a web server, not Go's "first record does not
// look like a TLS handshake".
func TestHandshakeWithAWebServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	err := handshakeWith(t, srv.Listener.Addr().String())
	if !errors.Is(err, ErrAnsweredHTTP) {
		t.Fatalf("Handshake with a web server: %v, want %v", err, ErrAnsweredHTTP)
	}
	if strings.Contains(err.Error(), "first record") {
		t.Errorf("error %q speaks of TLS records", err)
	}
}

// A TLS server still completes the handshake.
func TestHandshakeWithATLSServer(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	if err := handshakeWith(t, srv.Listener.Addr().String()); err != nil {
		t.Fatalf("Handshake with a TLS server: %v", err)
	}
}

// A UDP echo server answers the probe; a closed port and a silent socket
// do not.
func TestAnswersUDP(t *testing.T) {
	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { echo.Close(); <-done })
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	closed.Close()
	ctx := context.Background()
	if !AnswersUDP(ctx, echo.LocalAddr().String()) {
		t.Error("a UDP echo server does not answer")
	}
	if AnswersUDP(ctx, silent.LocalAddr().String()) {
		t.Error("a silent UDP socket answers")
	}
	if AnswersUDP(ctx, closedAddr) {
		t.Error("a closed UDP port answers")
	}
}

// A TCP echo server answers the probe; a closed port and a server that
// accepts and stays silent do not.
func TestAnswersTCP(t *testing.T) {
	listen := func(handle func(net.Conn)) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			handle(c)
		}()
		t.Cleanup(func() { l.Close(); <-done })
		return l.Addr().String()
	}
	echo := listen(func(c net.Conn) {
		// Byte by byte: the probe must be read back across pieces.
		b := make([]byte, 1)
		for {
			if _, err := c.Read(b); err != nil {
				return
			}
			c.Write(b)
		}
	})
	silent := listen(func(c net.Conn) { c.Read(make([]byte, 1)) })
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()
	ctx := context.Background()
	if !AnswersTCP(ctx, echo) {
		t.Error("a TCP echo server does not answer")
	}
	if AnswersTCP(ctx, silent) {
		t.Error("a silent TCP server answers")
	}
	if AnswersTCP(ctx, closedAddr) {
		t.Error("a closed TCP port answers")
	}
}
