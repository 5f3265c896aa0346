// Package testkit is what echod's tests share to drive real servers over
// loopback: a server started on a fresh port and stopped when the test ends,
// test servers that handle each TCP connection or UDP datagram with a
// function, client connections, a buffer that goroutines may write at once
// (a logger's), and a wait for a condition with a deadline instead of a
// sleep. Everything a helper opens is closed, and every goroutine it starts
// has returned, by the time the test ends.
package testkit

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Start listens on a fresh loopback port (127.0.0.1:0), runs serve on it on
// a goroutine, and returns its address. When the test ends it calls stop and
// waits for serve to return, failing the test unless serve's error is one of
// want (or nil).
func Start(t testing.TB, serve func(net.Listener) error, stop func(), want ...error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	t.Cleanup(func() {
		stop()
		err := <-done
		for _, w := range want {
			if errors.Is(err, w) {
				return
			}
		}
		if err != nil {
			t.Errorf("serve on %s returned %v, want one of %v", l.Addr(), err, want)
		}
	})
	return l.Addr().String()
}

// Dial connects to addr over TCP, with a 30-second deadline on the
// connection so that a stuck test fails rather than hangs. The connection
// is closed when the test ends.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return keep(t, c)
}

// DialFrom is Dial from the loopback address src (Linux answers on all of
// 127.0.0.0/8); it skips the test where src cannot be used.
func DialFrom(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s: %v", src, err)
	}
	return keep(t, c)
}

// keep gives the client connection c its deadline and closes it when the
// test ends.
func keep(t testing.TB, c net.Conn) *net.TCPConn {
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// Buffer is a bytes.Buffer that goroutines may write at once, such as the
// output of a logger that a server shares.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what has been written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor polls cond until it holds, and fails the test if it does not
// within 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Eventually(10*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// Eventually polls cond until it holds, for at most within, and reports
// whether it held: for a test that fails with a message of its own.
func Eventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Listen listens on a fresh TCP port on 127.0.0.1; the listener is closed
// when the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// listening is echod's readiness line, one a listener once it accepts.
var listening = regexp.MustCompile(`msg=listening proto=(\w+) addr=(\S+)`)

// Listening returns the addresses that the readiness lines in an echod log
// name ("msg=listening proto=tcp addr=127.0.0.1:7007", one a listener), by
// protocol, and how many such lines there are.
func Listening(log string) (addrs map[string][]string, n int) {
	m := listening.FindAllStringSubmatch(log, -1)
	addrs = map[string][]string{}
	for _, sub := range m {
		addrs[sub[1]] = append(addrs[sub[1]], sub[2])
	}
	return addrs, len(m)
}

// FreeAddr returns an address on 127.0.0.1 where nothing listens for
// network ("tcp" or "udp"): a port the kernel has just handed out and taken
// back. Another process may take it meanwhile, so it is for tests of what a
// client says to a closed port, not for starting a server on.
func FreeAddr(t testing.TB, network string) string {
	t.Helper()
	var c io.Closer
	var addr string
	switch network {
	case "tcp":
		l, err := net.Listen(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, addr = l, l.Addr().String()
	default:
		pc, err := net.ListenPacket(network, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, addr = pc, pc.LocalAddr().String()
	}
	c.Close()
	return addr
}

// ListenUDP opens a UDP socket on addr, an IP and a port (0 picks one),
// until the test ends. It skips the test when the socket cannot be had: there is no
// IPv6 loopback ([::1]), say.
func ListenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no UDP on %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Serve accepts connections on l until the test ends and runs handle on
// each, on a goroutine of its own, closing the connection when handle
// returns. When the test ends it closes l and every connection still open,
// and waits for the handlers, which must return once their connection is
// closed. It returns l's address.
func Serve(t testing.TB, l net.Listener, handle func(c net.Conn)) string {
	var wg sync.WaitGroup
	var mu sync.Mutex
	// Keyed by a pointer of our own: a net.Conn need not be comparable.
	type open struct{ net.Conn }
	conns := map[*open]bool{}
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			o := &open{c}
			mu.Lock()
			conns[o] = true
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, o)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
	return l.Addr().String()
}

// ServeUDP listens for UDP on addr (127.0.0.1:0, say) and answers each
// datagram, read into a buffer of bufSize bytes, with the datagrams that
// reply returns for it, until the test ends. It returns the socket's
// address.
func ServeUDP(t testing.TB, addr string, bufSize int, reply func(p []byte) [][]byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		pc.Close()
		wg.Wait()
	})
	wg.Go(func() {
		buf := make([]byte, bufSize)
		for {
			n, from, err := pc.ReadFrom(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue // only the close at the test's end stops the server
			}
			for _, r := range reply(buf[:n]) {
				pc.WriteTo(r, from)
			}
		}
	})
	return pc.LocalAddr().String()
}

// Get fetches url with a 10-second timeout and returns the status code and
// the body, failing the test if either cannot be had.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}
