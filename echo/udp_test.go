package echo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// startUDP serves UDP echo with srv on a fresh port of host until the test
// ends, and returns the server's address.
func startUDP(t *testing.T, srv *Server, host string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("no UDP on %s: %v", host, err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeUDP(context.Background(), pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeUDP returned %v, want ErrServerClosed", err)
		}
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// udpClient opens a UDP socket bound to local (any port if it is 0).
func udpClient(t *testing.T, local netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
	if err != nil {
		t.Fatalf("bind %v: %v", local, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpRoundTrip sends msg to server from c and checks that exactly msg comes
// back, from the server.
func udpRoundTrip(c *net.UDPConn, server netip.AddrPort, msg []byte) error {
	if _, err := c.WriteToUDPAddrPort(msg, server); err != nil {
		return fmt.Errorf("send %d bytes: %w", len(msg), err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, udpBufferSize)
	n, from, err := c.ReadFromUDPAddrPort(got)
	if err != nil {
		return fmt.Errorf("reply to %d bytes: %w", len(msg), err)
	}
	if from.Port() != server.Port() || from.Addr().Unmap() != server.Addr().Unmap() {
		return fmt.Errorf("reply came from %v, want %v", from, server)
	}
	if !bytes.Equal(got[:n], msg) {
		return fmt.Errorf("reply of %d bytes to %d sent differs (first at %d)", n, len(msg), pattern.FirstDiff(got[:n], msg))
	}
	return nil
}

func payload(seed uint64, size int) []byte {
	p := make([]byte, size)
	pattern.NewStream(seed).Read(p)
	return p
}

func TestUDPEchoesEachDatagramExactly(t *testing.T) {
	for _, tt := range []struct {
		host string
		max  int // the largest UDP payload: 65535 less the IP and UDP headers
	}{
		{"127.0.0.1", 65507},
		{"::1", 65527},
	} {
		t.Run(tt.host, func(t *testing.T) {
			server := startUDP(t, &Server{}, tt.host)
			c := udpClient(t, netip.AddrPortFrom(server.Addr(), 0))
			for i, size := range []int{0, 1, 13, 512, 1472, 4096, 9000, 32 << 10, tt.max} {
				if err := udpRoundTrip(c, server, payload(uint64(i+1), size)); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestUDPBurst sends datagrams faster than they are read, so the server
// takes several at once (on Linux, in one recvmmsg): each must still get
// exactly one reply, with its own bytes, to its own sender.
func TestUDPBurst(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			srv := &Server{}
			server := startUDP(t, srv, host)
			// Two clients interleaved, so a batch holds several sources.
			clients := []*net.UDPConn{
				udpClient(t, netip.AddrPortFrom(server.Addr(), 0)),
				udpClient(t, netip.AddrPortFrom(server.Addr(), 0)),
			}
			// Sizes differ, so each reply says which datagram it answers;
			// the whole burst fits the sockets' default buffers.
			const count = 40
			want := make(map[int][]byte)
			for i := range count {
				size := i * 29
				want[size] = payload(uint64(i+1), size)
				if _, err := clients[i%2].WriteToUDPAddrPort(want[size], server); err != nil {
					t.Fatal(err)
				}
			}
			got := make([]byte, udpBufferSize)
			for i, c := range clients {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for range count / 2 {
					n, from, err := c.ReadFromUDPAddrPort(got)
					if err != nil {
						t.Fatalf("client %d: %d replies missing: %v", i, len(want), err)
					}
					if from != server {
						t.Fatalf("reply came from %v, want %v", from, server)
					}
					w, ok := want[n]
					if !ok || (n/29)%2 != i {
						t.Fatalf("client %d: a reply of %d bytes, which it did not send or which was answered already", i, n)
					}
					if !bytes.Equal(got[:n], w) {
						t.Fatalf("reply of %d bytes differs at %d", n, pattern.FirstDiff(got[:n], w))
					}
					delete(want, n)
				}
			}
			waitFor(t, "every reply to be counted", func() bool { return srv.Stats().UDPReplies >= count })
			st := srv.Stats()
			if st.UDPDatagrams != count || st.UDPReplies != count || st.UDPBytesIn != st.UDPBytesOut || st.UDPBytesIn != 29*count*(count-1)/2 {
				t.Errorf("Stats: %d datagrams, %d replies, %d bytes in, %d out; want %d, %d, %d, %[4]d",
					st.UDPDatagrams, st.UDPReplies, st.UDPBytesIn, st.UDPBytesOut, count, count, 29*count*(count-1)/2)
			}
		})
	}
}

func TestUDPManySendersAtOnce(t *testing.T) {
	srv := &Server{}
	server := startUDP(t, srv, "127.0.0.1")
	const senders, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
		wg.Go(func() {
			for j := range each {
				// Sizes vary so that replies cannot be mixed up unnoticed.
				msg := payload(uint64(i*each+j+1), (i*997+j*131)%4000)
				if err := udpRoundTrip(c, server, msg); err != nil {
					errs <- fmt.Errorf("sender %d, datagram %d: %w", i, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The count follows the reply, which the client may read first.
	waitFor(t, "every reply to be counted", func() bool { return srv.Stats().UDPReplies >= senders*each })
	if got := srv.Stats().UDPReplies; got != senders*each {
		t.Errorf("Stats().UDPReplies = %d, want %d", got, senders*each)
	}
}

func TestCheckSource(t *testing.T) {
	local := map[uint16]bool{7007: true}
	tests := []struct {
		src             string
		allowPrivileged bool
		want            Reason // wantOK when ok
		wantOK          bool
	}{
		{"192.0.2.1:40000", false, 0, true},
		{"[2001:db8::1]:40000", false, 0, true},
		{"192.0.2.1:1024", false, 0, true},
		{"192.0.2.1:1023", false, ReasonUDPPrivilegedPort, false},
		{"192.0.2.1:7", false, ReasonUDPPrivilegedPort, false},
		{"192.0.2.1:19", false, ReasonUDPPrivilegedPort, false},
		{"[::ffff:192.0.2.1]:19", false, ReasonUDPPrivilegedPort, false},
		{"[2001:db8::1]:17", false, ReasonUDPPrivilegedPort, false},
		{"192.0.2.1:19", true, 0, true},
		{"192.0.2.1:0", true, ReasonUDPBadSource, false},
		{"0.0.0.0:40000", true, ReasonUDPBadSource, false},
		{"0.1.2.3:40000", true, ReasonUDPBadSource, false},
		{"[::]:40000", true, ReasonUDPBadSource, false},
		{"224.0.0.1:40000", true, ReasonUDPBadSource, false},
		{"239.255.255.250:1900", true, ReasonUDPBadSource, false},
		{"[::ffff:224.0.0.1]:40000", true, ReasonUDPBadSource, false},
		{"[ff02::1]:40000", true, ReasonUDPBadSource, false},
		{"255.255.255.255:40000", true, ReasonUDPBadSource, false},
		{"240.0.0.1:40000", true, ReasonUDPBadSource, false},
		{"192.0.2.1:7007", true, ReasonUDPLoop, false},
		{"127.0.0.1:7007", true, ReasonUDPLoop, false},
	}
	for _, tt := range tests {
		r, ok := checkSource(netip.MustParseAddrPort(tt.src), tt.allowPrivileged, local)
		if ok != tt.wantOK || (!ok && r != tt.want) {
			t.Errorf("checkSource(%s, allowPrivileged=%v) = %v, %v; want %v, %v", tt.src, tt.allowPrivileged, r, ok, tt.want, tt.wantOK)
		}
	}
	if _, ok := checkSource(netip.AddrPort{}, true, local); ok {
		t.Error("checkSource admits the zero AddrPort")
	}
}

// expectDropped waits until srv has counted want drops for r, then checks
// that none of the sockets in silent got a reply.
func expectDropped(t *testing.T, srv *Server, r Reason, want uint64, silent ...*net.UDPConn) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d datagrams dropped for %v", want, r), func() bool {
		return srv.Stats().Limited[r] >= want
	})
	if got := srv.Stats().Limited[r]; got != want {
		t.Errorf("dropped %d datagrams for %v, want %d", got, r, want)
	}
	// The drop has been decided; a reply would already be on its way.
	for _, c := range silent {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, from, err := c.ReadFromUDPAddrPort(make([]byte, 100)); err == nil {
			t.Errorf("%v got a %d-byte reply from %v", c.LocalAddr(), n, from)
		}
	}
}

func TestUDPIgnoresPrivilegedSourcePorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding ports 7 and 19 needs root")
	}
	srv := &Server{}
	server := startUDP(t, srv, "127.0.0.1")
	// Another echo server (port 7) or chargen (port 19) would answer the
	// reply, and the two would loop forever.
	var silent []*net.UDPConn
	for _, port := range []uint16{7, 19} {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
		if errors.Is(err, syscall.EADDRINUSE) {
			t.Skipf("port %d is in use here", port)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.WriteToUDPAddrPort([]byte("loop?"), server); err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	expectDropped(t, srv, ReasonUDPPrivilegedPort, 2, silent...)
	// Ordinary clients are still answered.
	if err := udpRoundTrip(udpClient(t, netip.MustParseAddrPort("127.0.0.1:0")), server, []byte("hi")); err != nil {
		t.Fatal(err)
	}
}

func TestUDPAllowPrivilegedPorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding port 19 needs root")
	}
	server := startUDP(t, &Server{UDPAllowPrivilegedPorts: true}, "127.0.0.1")
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 19})
	if err != nil {
		t.Skipf("bind port 19: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := udpRoundTrip(c, server, []byte("I know what I am doing")); err != nil {
		t.Fatal(err)
	}
}

func TestUDPIgnoresItsOwnPort(t *testing.T) {
	srv := &Server{}
	// The server on 127.0.0.2 and a "peer" on 127.0.0.1 share a port, as
	// two echo servers on the default port would.
	server := startUDP(t, srv, "127.0.0.2")
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(server.Port())})
	if err != nil {
		t.Skipf("port %d is taken on 127.0.0.1: %v", server.Port(), err)
	}
	t.Cleanup(func() { peer.Close() })
	if _, err := peer.WriteToUDPAddrPort([]byte("ping"), server); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, srv, ReasonUDPLoop, 1, peer)
}

func TestUDPSourceRateLimit(t *testing.T) {
	srv := &Server{UDPSourceRate: 5}
	server := startUDP(t, srv, "127.0.0.1")
	c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
	const sent = 40
	for i := range sent {
		// Different bytes each, or the loop guard would take the repeats.
		if _, err := c.WriteToUDPAddrPort(fmt.Appendf(nil, "flood %d", i), server); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every datagram answered or dropped", func() bool {
		st := srv.Stats()
		return st.UDPReplies+st.Limited[ReasonUDPRateLimit] == sent
	})
	// The bucket holds one second's worth; a few more may trickle in while
	// the datagrams are sent.
	if got := srv.Stats().UDPReplies; got < 5 || got > 10 {
		t.Errorf("answered %d of %d datagrams from one source at 5/s, want 5 to 10", got, sent)
	}
	// Another source has its own budget.
	other := udpClient(t, netip.MustParseAddrPort("127.0.0.2:0"))
	if err := udpRoundTrip(other, server, []byte("me too")); err != nil {
		t.Fatal(err)
	}
}

func TestUDPGlobalCap(t *testing.T) {
	srv := &Server{UDPSourceRate: 100, UDPGlobalRate: 4}
	server := startUDP(t, srv, "127.0.0.1")
	const sources, each = 4, 5
	for i := range sources {
		c := udpClient(t, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 0))
		for j := range each {
			if _, err := c.WriteToUDPAddrPort(fmt.Appendf(nil, "x%d", j), server); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "every datagram answered or dropped", func() bool {
		st := srv.Stats()
		return st.UDPReplies+st.Limited[ReasonUDPGlobalCap] == sources*each
	})
	st := srv.Stats()
	if st.UDPReplies < 4 || st.UDPReplies > 8 || st.Limited[ReasonUDPRateLimit] != 0 {
		t.Errorf("answered %d of %d under a global cap of 4/s (rate-limited %d), want 4 to 8 and none per source",
			st.UDPReplies, sources*each, st.Limited[ReasonUDPRateLimit])
	}
}

func TestTokenBucket(t *testing.T) {
	var b tokenBucket
	now := time.Duration(0)
	for i := range 10 {
		if !b.take(now, 10) {
			t.Fatalf("burst: token %d refused", i)
		}
	}
	if b.take(now, 10) {
		t.Fatal("an 11th token in the same instant")
	}
	now += 100 * time.Millisecond // one token's worth at 10/s
	if !b.take(now, 10) || b.take(now, 10) {
		t.Fatal("want exactly one token after 100ms at 10/s")
	}
	now += time.Hour // refills to the burst, not beyond
	n := 0
	for b.take(now, 10) {
		n++
	}
	if n != 10 {
		t.Fatalf("after an hour, %d tokens, want the burst of 10", n)
	}
}

func TestServeUDPStops(t *testing.T) {
	t.Run("context", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv := &Server{}
		done := make(chan error, 1)
		go func() { done <- srv.ServeUDP(ctx, pc) }()
		c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
		if err := udpRoundTrip(c, pc.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("up")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("ServeUDP = %v, want context.Canceled", err)
		}
		if _, err := pc.WriteTo([]byte("x"), c.LocalAddr()); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("socket still open after ServeUDP returned: %v", err)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{}
		done := make(chan error, 1)
		go func() { done <- srv.ServeUDP(context.Background(), pc) }()
		waitFor(t, "ServeUDP to start", func() bool {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			return len(srv.listeners) == 1
		})
		if err := srv.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ServeUDP = %v, want ErrServerClosed", err)
		}
	})
	t.Run("after close", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{}
		srv.Close()
		if err := srv.ServeUDP(context.Background(), pc); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("ServeUDP = %v, want ErrServerClosed", err)
		}
	})
}

// benchUDP measures round trips of size-byte datagrams through the server
// at server, from one client.
func benchUDP(b *testing.B, server netip.AddrPort, size int) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	got := make([]byte, udpBufferSize)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		// New bytes each time: the same bytes straight back are what the
		// loop guard drops.
		binary.BigEndian.PutUint64(msg, i)
		if _, err := c.WriteToUDPAddrPort(msg, server); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(got); err != nil {
			b.Fatal(err)
		}
	}
}

// udpBenchConfigs are the servers the UDP benchmarks compare: the loop
// guard alone (the default, which takes no lock), and with both rate limits
// on, set high enough never to drop.
var udpBenchConfigs = []struct {
	name string
	srv  func() *Server
}{
	{"guard", func() *Server { return &Server{} }},
	{"limits", func() *Server { return &Server{UDPSourceRate: 1e9, UDPGlobalRate: 1e9} }},
}

// benchUDPServer serves UDP echo with srv on a loopback port until the
// benchmark ends, and returns its address.
func benchUDPServer(b *testing.B, srv *Server) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeUDP(context.Background(), pc) }()
	b.Cleanup(func() { srv.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// BenchmarkUDPEcho runs datagrams through ServeUDP, one client at a time.
// Its allocs/op counts the client too, which allocates nothing: a non-zero
// figure is the server's.
func BenchmarkUDPEcho(b *testing.B) {
	for _, cfg := range udpBenchConfigs {
		for _, size := range []int{64, 1400} {
			b.Run(fmt.Sprintf("%s/%dB", cfg.name, size), func(b *testing.B) {
				benchUDP(b, benchUDPServer(b, cfg.srv()), size)
			})
		}
	}
}

// BenchmarkUDPEchoParallel is BenchmarkUDPEcho with a client per
// GOMAXPROCS goroutine, so that the server's readers decide at once.
func BenchmarkUDPEchoParallel(b *testing.B) {
	for _, cfg := range udpBenchConfigs {
		b.Run(cfg.name+"/64B", func(b *testing.B) {
			server := benchUDPServer(b, cfg.srv())
			b.SetBytes(64)
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				msg := make([]byte, 64)
				got := make([]byte, udpBufferSize)
				for i := uint64(0); pb.Next(); i++ {
					binary.BigEndian.PutUint64(msg, i)
					if _, err := c.WriteToUDPAddrPort(msg, server); err != nil {
						b.Error(err)
						return
					}
					if _, _, err := c.ReadFromUDPAddrPort(got); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkUDPPlainLoop is the baseline for BenchmarkUDPEcho: the simplest
// ReadFrom/WriteTo echo loop, with no guard, limits or counters.
func BenchmarkUDPPlainLoop(b *testing.B) {
	for _, size := range []int{64, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			wg.Go(func() {
				buf := make([]byte, udpBufferSize)
				for {
					n, addr, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo(buf[:n], addr)
				}
			})
			defer func() { pc.Close(); wg.Wait() }()
			benchUDP(b, pc.LocalAddr().(*net.UDPAddr).AddrPort(), size)
		})
	}
}
