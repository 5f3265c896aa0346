package echo

// Regression tests for the defects of issue 12 found by attacking echod:
// the session byte limit losing its echo (1), idle TLS and PROXY
// connections holding a buffer (3), and the idle timeout closing clients
// that are still reading (4). They use the public API only, over real
// sockets, for plain TCP, TLS and PROXY protocol on both engines.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/internal/testcert"
)

// connKind is a way for clients to reach a server: plain TCP, TLS, or TCP
// through a PROXY protocol proxy.
type connKind struct {
	name   string
	listen func(t *testing.T) net.Listener
	dial   func(t *testing.T, addr string) net.Conn
}

func connKinds(t *testing.T) []connKind {
	certFile, keyFile, cert := testcert.Write(t, t.TempDir(), "server", "echod test")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return []connKind{
		{
			name:   "plain",
			listen: loopbackListener,
			dial:   func(t *testing.T, addr string) net.Conn { return dial(t, addr) },
		},
		{
			name: "tls",
			listen: func(t *testing.T) net.Listener {
				return tls.NewListener(loopbackListener(t), &tls.Config{Certificates: []tls.Certificate{pair}})
			},
			dial: func(t *testing.T, addr string) net.Conn {
				c := tls.Client(dial(t, addr), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
				if err := c.Handshake(); err != nil {
					t.Fatalf("TLS handshake: %v", err)
				}
				return c
			},
		},
		{
			name: "proxy",
			listen: func(t *testing.T) net.Listener {
				return proxied.NewListener(loopbackListener(t), proxied.Config{})
			},
			dial: func(t *testing.T, addr string) net.Conn {
				c := dial(t, addr)
				if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.1 127.0.0.1 40000 7007\r\n"); err != nil {
					t.Fatalf("send PROXY header: %v", err)
				}
				return c
			},
		},
	}
}

func loopbackListener(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// forEachEngineAndKind runs test as a subtest for each engine and kind of
// connection.
func forEachEngineAndKind(t *testing.T, test func(t *testing.T, srv *Server, k connKind)) {
	kinds := connKinds(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, k := range kinds {
			t.Run(k.name, func(t *testing.T) { test(t, &Server{Engine: engine}, k) })
		}
	})
}

// serveKind serves srv on a fresh listener of kind k until the test ends.
func serveKind(t *testing.T, srv *Server, k connKind) string {
	t.Helper()
	l := k.listen(t)
	serveOn(t, srv, l)
	return l.Addr().String()
}

// readSlowly reads c at about rate bytes a second, in pieces of 8 KiB,
// until it has want bytes, an error, or (want < 0) for d. It returns what
// it read and the error that stopped it, if any.
func readSlowly(c net.Conn, rate, want int, d time.Duration) ([]byte, error) {
	const piece = 8 << 10
	every := time.Duration(piece) * time.Second / time.Duration(rate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	var got []byte
	buf := make([]byte, piece)
	end := time.Now().Add(d)
	for want < 0 && time.Now().Before(end) || want >= 0 && len(got) < want {
		<-tick.C
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

// Defect 1: with MaxSessionBytes, a client that sends far past the limit
// and reads slowly gets exactly its first N bytes back and then EOF. Before
// the fix the server closed with the client's input unread, so the kernel
// reset the connection and threw away the echo it still held.
func TestMaxSessionBytesEchoesEverythingToASlowReaderThatSendsMore(t *testing.T) {
	forEachEngineAndKind(t, func(t *testing.T, srv *Server, k connKind) {
		checkFDs(t)
		const limit = 1 << 20
		srv.MaxSessionBytes = limit
		addr := serveKind(t, srv, k)
		c := k.dial(t, addr)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		msg := payload(12, 4*limit)
		// The client sends four times its allowance, and reads it at
		// 2 MB/s, so the server's send buffer is full when it reaches the
		// limit and its input keeps coming.
		go c.Write(msg)
		got, err := readSlowly(c, 2<<20, limit+1, 0)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("after %d of %d bytes: %v, want EOF after them all", len(got), limit, err)
		}
		if !bytes.Equal(got, msg[:limit]) {
			t.Fatalf("got %d bytes back, want exactly the first %d", len(got), limit)
		}
		// The server counts the limit once the connection has ended.
		c.Close()
		waitFor(t, "the limit to be counted", func() bool { return srv.Stats().Limited[ReasonMaxSessionBytes] == 1 })
	})
}

// Defect 1's bound: a client that keeps sending past its limit and never
// reads is not kept open by the input it sends.
func TestMaxSessionBytesDoesNotLingerForever(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		srv := &Server{Engine: engine, MaxSessionBytes: 1000}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		chunk := make([]byte, 64<<10)
		start := time.Now()
		for {
			if _, err := c.Write(chunk); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the server kept a flooding client past its limit open")
				}
				break // closed by the server
			}
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("closed after %v", took)
		}
		waitFor(t, "the connection to be gone", func() bool { return srv.Stats().Conns == 0 })
	})
}

// Defect 3: after an echo, an idle TLS or PROXY connection is not parked in
// a read of its wrapper, which needs a buffer to read into; it waits on the
// socket with none.
func TestIdleWrappedConnectionsHoldNoBuffer(t *testing.T) {
	forEachEngineAndKind(t, func(t *testing.T, srv *Server, k connKind) {
		addr := serveKind(t, srv, k)
		msg := payload(13, 32<<10)
		for range 20 {
			roundTrip(t, k.dial(t, addr), msg)
		}
		waitFor(t, "no connection to be waiting in a read that holds a buffer", func() bool {
			return wrapperReads() == 0
		})
	})
}

// wrapperReads counts the goroutines blocked in a read of a socket
// through a wrapper (TLS, PROXY protocol), each of which holds the buffer
// it reads into. Every such read goes through net.(*conn).Read, whatever
// the wrapper; the server waits for an idle socket without one
// (RawConn.Read), and the test's own clients are not reading.
func wrapperReads() int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "net.(*conn).Read(") {
			n++
		}
	}
	return n
}

// Defect 4: a client that reads its echo steadily but slowly is making
// progress, however long the kernel waits before it lets the server write
// again, and over TLS as well. Scaled down from the attack (160 KB/s
// against a 2 s timeout over TLS, 320 KB per timeout): 640 KB/s against
// 500 ms. Slower still, a loopback client's window opens only every 64 KiB
// (its MSS) or so, too seldom for the kernel to show progress.
func TestIdleTimeoutKeepsASteadySlowReader(t *testing.T) {
	forEachEngineAndKind(t, func(t *testing.T, srv *Server, k connKind) {
		// Made first: under the race detector this takes longer than the
		// idle timeout, which would rightly close a connection already open.
		msg := payload(14, 8<<20)
		srv.IdleTimeout = 500 * time.Millisecond
		addr := serveKind(t, srv, k)
		c := k.dial(t, addr)
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go c.Write(msg)
		got, err := readSlowly(c, 640<<10, -1, 2500*time.Millisecond)
		if err != nil {
			t.Fatalf("closed after %d bytes read steadily: %v", len(got), err)
		}
		if !bytes.Equal(got, msg[:len(got)]) {
			t.Fatal("echo differs")
		}
		if n := srv.Stats().Limited[ReasonIdleTimeout]; n != 0 {
			t.Fatalf("%d connections closed as idle", n)
		}
	})
}

// Defect 4's other side: a silent client and one that never reads are
// still closed, whatever the kind of connection.
func TestIdleTimeoutStillClosesSilentAndStalledClients(t *testing.T) {
	forEachEngineAndKind(t, func(t *testing.T, srv *Server, k connKind) {
		checkFDs(t)
		srv.IdleTimeout = 500 * time.Millisecond
		addr := serveKind(t, srv, k)

		silent := k.dial(t, addr)
		// The server's last progress, its echo, comes after this.
		start := time.Now()
		roundTrip(t, silent, []byte("then silence"))
		waitClosed(t, silent)
		if took := time.Since(start); took < 500*time.Millisecond {
			t.Errorf("silent client closed after %v, before the timeout", took)
		}

		stalled := k.dial(t, addr)
		stalled.SetWriteDeadline(time.Now().Add(20 * time.Second))
		chunk := make([]byte, 64<<10)
		for srv.Stats().Limited[ReasonIdleTimeout] < 2 {
			if _, err := stalled.Write(chunk); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the server never closed a client that does not read")
				}
				break
			}
		}
		waitFor(t, "both idle timeouts to be counted", func() bool { return srv.Stats().Limited[ReasonIdleTimeout] == 2 })
		waitFor(t, "the connections to be gone", func() bool { return srv.Stats().Conns == 0 })
	})
}

// Defect 3, attacked: a TLS client that stops in the middle of a record
// holds no buffer either, once the server has waited a little for the
// rest.
func TestTLSClientStalledMidRecordHoldsNoBuffer(t *testing.T) {
	kinds := connKinds(t)
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine}
		addr := serveKind(t, srv, kinds[1])
		for range 5 {
			c := kinds[1].dial(t, addr).(*tls.Conn)
			// The header of a 16 KiB application data record and 3 of
			// its bytes, on the socket under the TLS connection.
			if _, err := c.NetConn().Write([]byte{23, 3, 3, 0x40, 0x00, 1, 2, 3}); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "no connection to be waiting in a read that holds a buffer", func() bool {
			return wrapperReads() == 0
		})
	})
}
