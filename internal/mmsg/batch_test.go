//go:build linux

package mmsg

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dial(t *testing.T, to *net.UDPConn) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newBatch(t *testing.T, c *net.UDPConn, slots, slotSize, control int) *Batch {
	t.Helper()
	b, err := NewBatch(c, slots, slotSize, control)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// payload is size bytes that say which datagram they are.
func payload(id, size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(id*31 + i*7)
	}
	return p
}

// readAll reads with b until want datagrams have arrived (in as many
// batches as that takes), calling each with every datagram's index, and
// returns the sizes of the batches.
func readAll(t *testing.T, c *net.UDPConn, b *Batch, want int, each func(i int)) []int {
	t.Helper()
	var batches []int
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got := 0; got < want; {
		n, err := b.Read()
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", got, want, err)
		}
		if n < 1 || n > b.Slots() {
			t.Fatalf("Read returned %d, want 1 to %d", n, b.Slots())
		}
		batches = append(batches, n)
		for i := range n {
			each(i)
		}
		got += n
	}
	return batches
}

// TestBatchEchoesMixedSizesAndSources is the echo server's use: datagrams
// of every size from several senders arrive in batches, and each is sent
// back, whole, to the socket it came from.
func TestBatchEchoesMixedSizesAndSources(t *testing.T) {
	for _, tt := range []struct{ host, max string }{
		{"127.0.0.1", "65507"},
		{"::1", "65527"},
	} {
		t.Run(tt.host, func(t *testing.T) {
			server := testkit.ListenUDP(t, net.JoinHostPort(tt.host, "0"))
			clients := []*net.UDPConn{dial(t, server), dial(t, server), dial(t, server)}
			var biggest int
			fmt.Sscan(tt.max, &biggest)
			sizes := []int{0, 1, 7, 512, 1472, 9000, 32 << 10, biggest}
			// Make sure the whole burst fits in the receive buffer.
			server.SetReadBuffer(4 << 20)
			// Each datagram's size says which one it is; the senders take
			// turns, so one batch holds several sources.
			sentBy := make(map[int]netip.AddrPort)
			for i, size := range sizes {
				c := clients[i%len(clients)]
				if _, err := c.Write(payload(i, size)); err != nil {
					t.Fatal(err)
				}
				sentBy[size] = c.LocalAddr().(*net.UDPAddr).AddrPort()
			}
			b := newBatch(t, server, 4, 64<<10, 0)
			seen := 0
			batches := readAll(t, server, b, len(sizes), func(i int) {
				p, n := b.Datagram(i)
				if n != len(p) {
					t.Fatalf("a %d-byte datagram came as %d bytes in a 64 KiB slot", n, len(p))
				}
				id := -1
				for j, size := range sizes {
					if size == n {
						id = j
					}
				}
				if id < 0 || !bytes.Equal(p, payload(id, n)) {
					t.Fatalf("datagram %d of the batch (%d bytes) is not one that was sent", i, n)
				}
				if src := b.Source(i); src != sentBy[n] {
					t.Errorf("the %d-byte datagram came from %v, want %v", n, src, sentBy[n])
				}
				if len(b.Control(i)) != 0 {
					t.Errorf("control messages %x, though none were asked for", b.Control(i))
				}
				b.Reply(i)
				seen++
				if b.Queued() == b.Slots() || seen == len(sizes) {
					sent, sentBytes, err := b.Flush()
					if err != nil || sent != b.Slots() && seen != len(sizes) || sentBytes == 0 && n != 0 {
						t.Fatalf("Flush = %d, %d, %v", sent, sentBytes, err)
					}
				}
			})
			if len(batches) < 2 {
				t.Errorf("%d datagrams came in batches %v, want several batches of at most 4", len(sizes), batches)
			}
			buf := make([]byte, 64<<10+1)
			for i, size := range sizes {
				c := clients[i%len(clients)]
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("the reply to the %d-byte datagram: %v", size, err)
				}
				if !bytes.Equal(buf[:n], payload(i, size)) {
					t.Fatalf("the reply to the %d-byte datagram is %d bytes and differs", size, n)
				}
			}
		})
	}
}

// TestBatchSourceOfIPv4OnDualStack: on a socket that takes both IPv4 and
// IPv6, an IPv4 sender shows as an IPv4-mapped address, and the reply
// reaches it.
func TestBatchSourceOfIPv4OnDualStack(t *testing.T) {
	server, err := net.ListenUDP("udp", &net.UDPAddr{})
	if err != nil {
		t.Skipf("no dual-stack UDP: %v", err)
	}
	t.Cleanup(func() { server.Close() })
	port := server.LocalAddr().(*net.UDPAddr).Port
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte("v4")); err != nil {
		t.Fatal(err)
	}
	b := newBatch(t, server, 2, 100, 0)
	readAll(t, server, b, 1, func(i int) {
		want := c.LocalAddr().(*net.UDPAddr).AddrPort()
		if src := b.Source(i); src.Addr().Unmap() != want.Addr() || src.Port() != want.Port() {
			t.Errorf("Source = %v, want %v", src, want)
		}
		b.Reply(i)
	})
	if sent, _, err := b.Flush(); sent != 1 || err != nil {
		t.Fatalf("Flush = %d, %v", sent, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "v4" {
		t.Fatalf("reply %q, %v", buf[:n], err)
	}
}

// TestBatchTruncates is the load generator's use: a slot one byte larger
// than what was sent shows a longer datagram as truncated, with its length
// in full.
func TestBatchTruncates(t *testing.T) {
	server := testkit.ListenUDP(t, "127.0.0.1:0")
	c := dial(t, server)
	sizes := []int{99, 100, 101, 300}
	for i, size := range sizes {
		if _, err := c.Write(payload(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	b := newBatch(t, server, 8, 100, 0)
	k := 0
	readAll(t, server, b, len(sizes), func(i int) {
		p, n := b.Datagram(i)
		size := sizes[k]
		if n != size || len(p) != min(size, 100) || !bytes.Equal(p, payload(k, size)[:len(p)]) {
			t.Errorf("a %d-byte datagram in a 100-byte slot: %d bytes of %d", size, len(p), n)
		}
		k++
	})
}

// TestBatchFlushSkipsARefusedDatagram: sendmmsg stops at a datagram the
// kernel refuses (here one too large for UDP), so the kernel takes fewer
// than asked; Flush sends those before it and those after it, and reports
// the refusal.
func TestBatchFlushSkipsARefusedDatagram(t *testing.T) {
	server := testkit.ListenUDP(t, "127.0.0.1:0")
	c := dial(t, server)
	b := newBatch(t, c, 5, 10, 0)
	queued := [][]byte{[]byte("one"), []byte("two"), make([]byte, 70000), []byte("four"), []byte("")}
	for _, p := range queued {
		b.Queue(p)
	}
	if b.Queued() != 5 {
		t.Fatalf("Queued = %d, want 5", b.Queued())
	}
	sent, sentBytes, err := b.Flush()
	if sent != 4 || sentBytes != 10 || !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("Flush = %d datagrams, %d bytes, %v; want 4, 10, EMSGSIZE", sent, sentBytes, err)
	}
	if b.Queued() != 0 {
		t.Fatalf("Queued = %d after Flush, want 0", b.Queued())
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	for _, want := range []string{"one", "two", "four", ""} {
		n, err := server.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q, %v; want %q", buf[:n], err, want)
		}
	}
	// The queue is reusable, and sends in order.
	b.Queue([]byte("again"))
	if sent, _, err := b.Flush(); sent != 1 || err != nil {
		t.Fatalf("Flush = %d, %v", sent, err)
	}
	if n, err := server.Read(buf); err != nil || string(buf[:n]) != "again" {
		t.Fatalf("got %q, %v", buf[:n], err)
	}
}

// TestBatchSendsMoreThanTheKernelTakesAtOnce: one sendmmsg takes at most
// UIO_MAXIOV (1024) messages, so a larger queue takes several calls; Flush
// sends all of it, in order.
func TestBatchSendsMoreThanTheKernelTakesAtOnce(t *testing.T) {
	server := testkit.ListenUDP(t, "127.0.0.1:0")
	server.SetReadBuffer(4 << 20)
	c := dial(t, server)
	const slots = 1100
	b := newBatch(t, c, slots, 1, 0)
	ids := make([][]byte, slots)
	for i := range ids {
		ids[i] = fmt.Appendf(nil, "%04d", i)
		b.Queue(ids[i])
	}
	sent, sentBytes, err := b.Flush()
	if sent != slots || sentBytes != 4*slots || err != nil {
		t.Fatalf("Flush = %d datagrams, %d bytes, %v; want %d, %d, nil", sent, sentBytes, err, slots, 4*slots)
	}
	// How many arrive depends on the receiver's room (the kernel drops
	// what does not fit); those that do come in order, each once.
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	next := 0
	for next < slots {
		n, err := server.Read(buf)
		if err != nil {
			if next == 0 {
				t.Fatalf("nothing arrived: %v", err)
			}
			break
		}
		var id int
		if _, err := fmt.Sscanf(string(buf[:n]), "%d", &id); err != nil || id < next {
			t.Fatalf("datagram %q after %d", buf[:n], next-1)
		}
		next = id + 1
		server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
}

// TestBatchReportsErrors: a connected socket whose peer is closed reports
// ECONNREFUSED (the load generator reconnects on it); a read deadline ends
// a Read; a closed socket ends Read and Flush.
func TestBatchReportsErrors(t *testing.T) {
	closed := testkit.ListenUDP(t, "127.0.0.1:0")
	c := dial(t, closed)
	closed.Close()
	b := newBatch(t, c, 4, 10, 0)
	b.Queue([]byte("anyone?"))
	if _, _, err := b.Flush(); err != nil {
		t.Fatalf("Flush = %v; the refusal comes later", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Read = %v, want ECONNREFUSED", err)
	}

	server := testkit.ListenUDP(t, "127.0.0.1:0")
	b = newBatch(t, server, 4, 10, 0)
	server.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if n, err := b.Read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past the deadline = %d, %v", n, err)
	}
	server.Close()
	if _, err := b.Read(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed socket = %v", err)
	}
	b.Queue([]byte("x"))
	if _, _, err := b.Flush(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Flush on a closed socket = %v", err)
	}
}

// TestBatchControl: with control bytes, each datagram brings the control
// messages the socket asked for (here its destination, IP_PKTINFO).
func TestBatchControl(t *testing.T) {
	server := testkit.ListenUDP(t, "127.0.0.1:0")
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1) })
	if serr != nil {
		t.Skipf("IP_PKTINFO: %v", serr)
	}
	c := dial(t, server)
	for _, m := range []string{"a", "b"} {
		if _, err := c.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	b := newBatch(t, server, 4, 10, 128)
	readAll(t, server, b, 2, func(i int) {
		cm, err := unix.ParseSocketControlMessage(b.Control(i))
		if err != nil || len(cm) != 1 || cm[0].Header.Type != unix.IP_PKTINFO {
			t.Fatalf("control messages of datagram %d: %v, %v", i, cm, err)
		}
		// in_pktinfo: ifindex, spec_dst, addr.
		if dst := netip.AddrFrom4([4]byte(cm[0].Data[8:12])); dst != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("destination %v, want 127.0.0.1", dst)
		}
	})
}

func TestNewBatchRefusesNonsense(t *testing.T) {
	c := testkit.ListenUDP(t, "127.0.0.1:0")
	for _, tt := range [][3]int{{0, 10, 0}, {1, 0, 0}, {1, 10, -1}} {
		if _, err := NewBatch(c, tt[0], tt[1], tt[2]); err == nil {
			t.Errorf("NewBatch(%d slots, %d bytes, %d control) succeeded", tt[0], tt[1], tt[2])
		}
	}
}
