package check

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

// This file holds echo servers for the tests: one correct, and many
// deliberately broken in the ways real first attempts are.

// serveTCP listens on 127.0.0.1:0 and runs handle on each connection, on its
// own goroutine, until the test ends. handle must return once its
// connection is closed or done is closed.
func serveTCP(t *testing.T, handle func(c *net.TCPConn, done <-chan struct{})) string {
	t.Helper()
	return serveListener(t, testkit.Listen(t), func(c *net.TCPConn, done <-chan struct{}) bool {
		handle(c, done)
		return true
	}, false)
}

// serveListener accepts on l until the test ends or handle returns false.
// With sequential set, it handles one connection at a time.
func serveListener(t *testing.T, l net.Listener, handle func(c *net.TCPConn, done <-chan struct{}) bool, sequential bool) string {
	t.Helper()
	done := make(chan struct{})
	var turn chan struct{}
	if sequential {
		turn = make(chan struct{}, 1)
		l = oneAtATime{l, turn}
	}
	addr := testkit.Serve(t, l, func(c net.Conn) {
		if sequential {
			defer func() { <-turn }()
		}
		if !handle(c.(*net.TCPConn), done) {
			l.Close()
		}
	})
	// Cleanups run last first: done closes before Serve's cleanup.
	t.Cleanup(func() { close(done) })
	return addr
}

// oneAtATime accepts a connection only once the one before it has been
// handled (its handler receives from turn), leaving the others in the
// kernel's queue in the order they came, as a server that serves one
// client at a time does.
type oneAtATime struct {
	net.Listener
	turn chan struct{}
}

func (l oneAtATime) Accept() (net.Conn, error) {
	l.turn <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.turn
	}
	return c, err
}

// echoConn is a correct echo: write back each read as it arrives; close
// after the client's EOF.
func echoConn(c *net.TCPConn, _ <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// zeroPrefix uses a make([]byte, 4096) as its result and appends to it, then
// answers at EOF.
func zeroPrefix(c *net.TCPConn, _ <-chan struct{}) {
	result := make([]byte, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		result = append(result, buf[:n]...)
		if err != nil {
			break
		}
	}
	c.Write(result)
}

// wholeBuffer writes its whole 4096-byte buffer after every read, however
// few bytes the read returned.
func wholeBuffer(c *net.TCPConn, _ <-chan struct{}) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// neverCloses echoes correctly but, after the client's EOF, keeps the
// connection open until the test ends.
func neverCloses(c *net.TCPConn, done <-chan struct{}) {
	echoConn(c, done)
	<-done
}

// firstAttempt is the classic first attempt: a result made with 4096 zero
// bytes, appended to with the whole read buffer after every read, written
// at EOF.
func firstAttempt(c *net.TCPConn, _ <-chan struct{}) {
	result := make([]byte, 4096)
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			result = append(result, buf...)
		}
		if err != nil {
			break
		}
	}
	c.Write(result)
}

// neverWrites accepts and reads, but writes nothing back, and never
// closes: the echo a learner forgot to write.
func neverWrites(c *net.TCPConn, done <-chan struct{}) {
	io.Copy(io.Discard, c)
	<-done
}

// buffersUntilEOF reads everything, and only then writes it back.
func buffersUntilEOF(c *net.TCPConn, _ <-chan struct{}) {
	all, _ := io.ReadAll(c)
	c.Write(all)
}

// dropsLastByte has an off-by-one: it writes back all but the last byte of
// every read.
func dropsLastByte(c *net.TCPConn, _ <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 1 {
			if _, err := c.Write(buf[:n-1]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// reorders writes the second half of every read before the first.
func reorders(c *net.TCPConn, _ <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			h := n / 2
			if _, err := c.Write(append(append([]byte(nil), buf[h:n]...), buf[:h]...)); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// queuedEcho reads into an unbounded queue that a second goroutine writes
// back from after delay; at the client's EOF it closes at once, dropping
// whatever is still queued: the "closes before flushing" bug, and, with a
// delay, what a proxy that turns a half-close into a close does.
func queuedEcho(delay time.Duration) func(c *net.TCPConn, done <-chan struct{}) {
	return func(c *net.TCPConn, done <-chan struct{}) {
		// A small send buffer keeps most of the reply in the queue.
		c.SetWriteBuffer(32 << 10)
		queue := make(chan []byte, 1<<16)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer c.Close()
		wg.Go(func() {
			for b := range queue {
				if delay > 0 {
					select {
					case <-time.After(delay):
					case <-done:
						return
					}
				}
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		})
		defer close(queue)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				queue <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}
}

// shortReadEnds treats a read shorter than its buffer as the end of the
// message: it echoes that read and closes.
func shortReadEnds(c *net.TCPConn, _ <-chan struct{}) {
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		c.Write(buf[:n])
		if err != nil || n < len(buf) {
			return
		}
	}
}

// diesOnReset echoes correctly until a client resets its connection, then
// stops serving altogether, like a server that treats every error as fatal.
func diesOnReset(c *net.TCPConn, done <-chan struct{}) bool {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(werr, syscall.EPIPE)
			}
		}
		if err != nil {
			return !errors.Is(err, syscall.ECONNRESET)
		}
	}
}

// serveUDP runs a UDP echo on 127.0.0.1:0 that answers each datagram with
// reply(datagram), once per element, until the test ends.
func serveUDP(t *testing.T, bufSize int, reply func([]byte) [][]byte) string {
	t.Helper()
	return testkit.ServeUDP(t, "127.0.0.1:0", bufSize, reply)
}

func udpEcho(b []byte) [][]byte { return [][]byte{b} }

// lineEcho is the line-by-line server of a first attempt: bufio.Scanner,
// then each line written back with fmt.Fprintln (or, with keepNewline
// false, without one).
func lineEcho(keepNewline bool) func(c *net.TCPConn, _ <-chan struct{}) {
	return func(c *net.TCPConn, _ <-chan struct{}) {
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var err error
			if keepNewline {
				_, err = fmt.Fprintln(c, sc.Text())
			} else {
				_, err = c.Write(sc.Bytes())
			}
			if err != nil {
				return
			}
		}
	}
}

// serveHTTP runs a web server on 127.0.0.1:0 until the test ends.
func serveHTTP(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from the web")
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// serveTLS runs a correct echo server over TLS on 127.0.0.1:0 with a
// self-signed certificate, until the test ends, and returns its address.
func serveTLS(t *testing.T) string {
	t.Helper()
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "echo", "echo test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	return testkit.Serve(t, testkit.Listen(t), func(raw net.Conn) {
		c := tls.Server(raw, cfg)
		defer c.Close()
		// io.Copy ends at the client's close_notify; then close.
		io.Copy(c, c)
		c.CloseWrite()
	})
}

// limitConns echoes for the first n clients connected at once and resets
// any more at once, as echod serve -max-conns-per-ip n does.
func limitConns(t *testing.T, n int) string {
	t.Helper()
	var mu sync.Mutex
	open := 0
	return serveTCP(t, func(c *net.TCPConn, done <-chan struct{}) {
		mu.Lock()
		if open >= n {
			mu.Unlock()
			c.SetLinger(0)
			return
		}
		open++
		mu.Unlock()
		defer func() {
			mu.Lock()
			open--
			mu.Unlock()
		}()
		echoConn(c, done)
	})
}

// serveSerial is a correct echo that serves one client at a time.
func serveSerial(t *testing.T) string {
	t.Helper()
	return serveListener(t, testkit.Listen(t), func(c *net.TCPConn, done <-chan struct{}) bool {
		echoConn(c, done)
		return true
	}, true)
}
