package bench

import (
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// The servers the tests run, in test code: a correct echo server, and
// broken ones that bench must catch.

// serveTCP runs handle on every connection accepted on a fresh loopback
// listener until the test ends, and returns the listener's address.
func serveTCP(t *testing.T, handle func(c *net.TCPConn)) string {
	t.Helper()
	return testkit.Serve(t, testkit.Listen(t), func(c net.Conn) { handle(c.(*net.TCPConn)) })
}

// echo is a correct RFC 862 connection handler.
func echo(c *net.TCPConn) { io.Copy(c, c) }

// corruptAfter returns a handler that echoes correctly except for the byte
// at offset n of the connection's stream, which it flips.
func corruptAfter(n int64) func(c *net.TCPConn) {
	corrupt := corruptStream(n)
	return func(c *net.TCPConn) { corrupt(c) }
}

// corruptStream is corruptAfter for any connection, such as TLS.
func corruptStream(n int64) func(c net.Conn) {
	return func(c net.Conn) {
		buf := make([]byte, 32<<10)
		var off int64
		for {
			k, err := c.Read(buf)
			if k > 0 {
				if i := n - off; i >= 0 && i < int64(k) {
					buf[i] ^= 0x20
				}
				off += int64(k)
				if _, err := c.Write(buf[:k]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
}

// stallAt returns a handler that echoes correctly but, once the stream
// reaches offset n, holds the echo back for d.
func stallAt(n int64, d time.Duration) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		buf := make([]byte, 32<<10)
		var off int64
		for {
			k, err := c.Read(buf)
			if off < n && off+int64(k) >= n {
				time.Sleep(d)
			}
			off += int64(k)
			if _, werr := c.Write(buf[:k]); werr != nil || err != nil {
				return
			}
		}
	}
}

// resetAfter returns a handler that echoes n bytes, then resets the
// connection (close with SO_LINGER 0).
func resetAfter(n int64) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		io.Copy(c, io.LimitReader(c, n))
		c.SetLinger(0)
	}
}

// serveUDP echoes datagrams on a fresh loopback socket until the test ends,
// passing each through change first.
func serveUDP(t *testing.T, change func(p []byte)) string {
	t.Helper()
	return serveUDPReply(t, func(p []byte) []byte { change(p); return p })
}

// serveUDPReply answers each datagram p on a fresh loopback socket with
// reply(p) until the test ends.
func serveUDPReply(t *testing.T, reply func(p []byte) []byte) string {
	t.Helper()
	return testkit.ServeUDP(t, "127.0.0.1:0", 64<<10, func(p []byte) [][]byte { return [][]byte{reply(p)} })
}

// deadAddr returns a loopback address where nothing listens. A socket
// stays bound to it, without listening, until the test ends: connects are
// refused, and no other process on the machine can take the port meanwhile.
func deadAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
