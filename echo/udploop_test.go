package echo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// singleConn hides a *net.UDPConn's type, so that ServeUDP reads it one
// datagram at a time (echoDatagrams) instead of in batches.
type singleConn struct{ net.PacketConn }

// udpPaths are the two ways ServeUDP reads a socket; the loop guard must
// hold on both.
var udpPaths = []struct {
	name string
	wrap func(*net.UDPConn) net.PacketConn
}{
	{"batches", func(c *net.UDPConn) net.PacketConn { return c }},
	{"one at a time", func(c *net.UDPConn) net.PacketConn { return singleConn{c} }},
}

// serveUDPOn serves UDP echo with srv on pc until the test ends.
func serveUDPOn(t *testing.T, srv *Server, pc net.PacketConn) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.ServeUDP(context.Background(), pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeUDP returned %v, want ErrServerClosed", err)
		}
	})
}

// TestUDPLoopBetweenTwoServersDies: one datagram forged to come from one
// echo server, sent to another on a different (unprivileged) port, makes
// each answer once; the first to see its own reply come back drops it.
func TestUDPLoopBetweenTwoServersDies(t *testing.T) {
	for _, path := range udpPaths {
		for _, limits := range []struct {
			name               string
			sourceRate, global int
		}{{"no rate limits", 0, 0}, {"echod serve's rate limits", 1000, 20000}} {
			t.Run(path.name+", "+limits.name, func(t *testing.T) {
				pa, pb := testkit.ListenUDP(t, "127.0.0.1:0"), testkit.ListenUDP(t, "127.0.0.1:0")
				// What an attacker forges to B with A's address is what A's
				// own socket sends.
				if _, err := pa.WriteTo([]byte("loop, forever"), pb.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				a := &Server{UDPSourceRate: limits.sourceRate, UDPGlobalRate: limits.global}
				b := &Server{UDPSourceRate: limits.sourceRate, UDPGlobalRate: limits.global}
				serveUDPOn(t, a, path.wrap(pa))
				serveUDPOn(t, b, path.wrap(pb))
				waitFor(t, "B to drop A's echo of its reply", func() bool { return b.Stats().Limited[ReasonUDPLoop] == 1 })
				// Both still serve a client, and the loop is over: each
				// answered it once.
				for _, server := range []*net.UDPConn{pa, pb} {
					c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
					if err := udpRoundTrip(c, server.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("still there?")); err != nil {
						t.Fatal(err)
					}
				}
				waitFor(t, "the replies to be counted", func() bool { return a.Stats().UDPReplies >= 2 && b.Stats().UDPReplies >= 2 })
				sa, sb := a.Stats(), b.Stats()
				if sa.UDPReplies != 2 || sb.UDPReplies != 2 || sa.Limited[ReasonUDPLoop] != 0 || sb.Limited[ReasonUDPLoop] != 1 {
					t.Errorf("A answered %d and dropped %d as a loop, B answered %d and dropped %d; want 2 (one for the client), 0, 2, 1",
						sa.UDPReplies, sa.Limited[ReasonUDPLoop], sb.UDPReplies, sb.Limited[ReasonUDPLoop])
				}
			})
		}
	}
}

// echoPeer is another echo service, delay away: it sends every datagram
// it gets back to its sender after delay, until the test ends. It returns
// its socket and a count of the datagrams it got.
func echoPeer(t *testing.T, delay time.Duration) (*net.UDPConn, *atomic.Int64) {
	t.Helper()
	c := testkit.ListenUDP(t, "127.0.0.1:0")
	type pending struct {
		p   []byte
		to  netip.AddrPort
		due time.Time
	}
	queue := make(chan pending, 1024)
	var got atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(queue)
		buf := make([]byte, udpBufferSize)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			got.Add(1)
			queue <- pending{append([]byte(nil), buf[:n]...), from, time.Now().Add(delay)}
		}
	})
	wg.Go(func() {
		for d := range queue {
			// The peer's latency is what is under test, not a wait for
			// something to happen.
			time.Sleep(time.Until(d.due))
			c.WriteToUDPAddrPort(d.p, d.to)
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return c, &got
}

// TestUDPLoopThroughAnEchoPeerDies: datagrams forged to come from an echo
// service that answers everything, near or far, start loops that die
// within a round trip or two: the nearer the peer, the sooner.
func TestUDPLoopThroughAnEchoPeerDies(t *testing.T) {
	const forged = 60
	for _, tt := range []struct {
		name      string
		delay     time.Duration
		sameBytes bool // every forged datagram the same
		// How many times echod answers each forged datagram: at least
		// once, and at most after a round trip or two that took longer
		// than the window then in force.
		minReplies, maxReplies int
	}{
		{"on this host", 0, false, forged, forged},
		{"100ms away", 100 * time.Millisecond, false, forged, 2 * forged},
		{"400ms away", 400 * time.Millisecond, false, 2 * forged, 3 * forged},
		{"100ms away, the same bytes each", 100 * time.Millisecond, true, 1, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := &Server{}
			server := startUDP(t, srv, "127.0.0.1")
			peer, peerGot := echoPeer(t, tt.delay)
			for i := range forged {
				p := fmt.Appendf(nil, "forged datagram %d", i)
				if tt.sameBytes {
					p = []byte("forged datagram")
				}
				if _, err := peer.WriteToUDPAddrPort(p, server); err != nil {
					t.Fatal(err)
				}
			}
			// Each loop ends with a drop; no loop is left when every
			// forged datagram has had one.
			waitFor(t, "every loop to end", func() bool {
				return srv.Stats().Limited[ReasonUDPLoop] >= forged
			})
			waitFor(t, "the replies to be counted and reach the peer", func() bool {
				r := srv.Stats().UDPReplies
				return r >= uint64(tt.minReplies) && peerGot.Load() == int64(r)
			})
			st := srv.Stats()
			if st.UDPReplies > uint64(tt.maxReplies) || st.Limited[ReasonUDPLoop] != forged {
				t.Errorf("answered %d datagrams and dropped %d as loops; want %d to %d answered and %d dropped",
					st.UDPReplies, st.Limited[ReasonUDPLoop], tt.minReplies, tt.maxReplies, forged)
			}
		})
	}
}

// TestUDPClientsWithNewBytesLoseNothing: a client that sends its next
// datagram the moment the last comes back, as a reflector would, loses
// nothing as long as the bytes differ; nor do two clients that send the
// same bytes from different ports.
func TestUDPClientsWithNewBytesLoseNothing(t *testing.T) {
	for _, path := range udpPaths {
		t.Run(path.name, func(t *testing.T) {
			srv := &Server{}
			pc := testkit.ListenUDP(t, "127.0.0.1:0")
			serveUDPOn(t, srv, path.wrap(pc))
			server := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
			d := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
			const rounds = 300
			for i := range rounds {
				if err := udpRoundTrip(c, server, fmt.Appendf(nil, "ping %d", i)); err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
				if err := udpRoundTrip(d, server, fmt.Appendf(nil, "ping %d", i)); err != nil {
					t.Fatalf("round %d, the other client: %v", i, err)
				}
			}
			if n := srv.Stats().Limited[ReasonUDPLoop]; n != 0 {
				t.Errorf("%d datagrams dropped as loops", n)
			}
		})
	}
}

// TestUDPRepeatedBytes is what the guard costs: the same bytes sent again
// from the same port straight after their echo look like a reflection and
// get no answer; from another port, or after a pause, they do.
func TestUDPRepeatedBytes(t *testing.T) {
	srv := &Server{}
	server := startUDP(t, srv, "127.0.0.1")
	c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
	msg := []byte("are you there?")
	if err := udpRoundTrip(c, server, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort(msg, server); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, srv, ReasonUDPLoop, 1, c)
	if err := udpRoundTrip(udpClient(t, netip.MustParseAddrPort("127.0.0.1:0")), server, msg); err != nil {
		t.Fatalf("the same bytes from another port: %v", err)
	}
	// A client that tries again until it is answered is, once the window
	// has passed.
	buf := make([]byte, 100)
	for tries := 1; ; tries++ {
		if tries > 100 {
			t.Fatal("100 tries of the same bytes, 50ms apart, and no answer")
		}
		if _, err := c.WriteToUDPAddrPort(msg, server); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err == nil && string(buf[:n]) == string(msg) {
			break
		}
		if err != nil && !isTimeout(err) {
			t.Fatal(err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestReplyLogWindows follows one source's same bytes through the log: too
// soon is dropped, the window doubles with each answer to a repeat, and a
// long enough silence starts over.
func TestReplyLogWindows(t *testing.T) {
	var l replyLog
	const f = 0x1234_5678_9abc_def0
	steps := []struct {
		at   time.Duration
		want bool
	}{
		{0, true},                        // first: answered, window 250ms
		{0, false},                       // straight back
		{200 * time.Millisecond, false},  // within the window
		{300 * time.Millisecond, true},   // answered again: window 500ms
		{700 * time.Millisecond, false},  // 400ms later
		{850 * time.Millisecond, true},   // 550ms later: window 1s
		{1800 * time.Millisecond, false}, // 950ms later
		{1900 * time.Millisecond, true},  // 1050ms later: window 2s, the longest
		{3 * time.Second, false},         // 1.1s later
		{3800 * time.Millisecond, false}, // 1.9s later
		{4 * time.Second, true},          // 2.1s later: window 2s still
		{6200 * time.Millisecond, true},  // 2.2s later
		{10500 * time.Millisecond, true}, // 4.3s later, forgotten: window 250ms again
		{10600 * time.Millisecond, false},
		{10800 * time.Millisecond, true}, // window 500ms
		{11200 * time.Millisecond, false},
	}
	for i, s := range steps {
		slot, entry, ok := l.admit(f, ticks(s.at))
		if ok != s.want {
			t.Fatalf("step %d, at %v: admitted %v, want %v", i, s.at, ok, s.want)
		}
		if ok {
			slot.Store(entry)
		}
		// Other bytes, in the same slot or elsewhere, are not repeats.
		for _, other := range []uint64{f + 1, f ^ 1<<40} {
			if _, _, ok := l.admit(other, ticks(s.at)); !ok {
				t.Fatalf("step %d: fingerprint %#x refused after %#x", i, other, uint64(f))
			}
		}
	}
	// A client that repeats the same bytes every 3 seconds from one port,
	// for an hour, loses nothing.
	var lost int
	for at := 20 * time.Second; at < time.Hour; at += 3 * time.Second {
		slot, entry, ok := l.admit(f, ticks(at))
		if !ok {
			lost++
			continue
		}
		slot.Store(entry)
	}
	if lost > 0 {
		t.Errorf("the same bytes every 3s: %d refused", lost)
	}
	// One that repeats them every 100ms is answered every 2s or so.
	answered := 0
	for at := 2 * time.Hour; at < 2*time.Hour+time.Minute; at += 100 * time.Millisecond {
		if slot, entry, ok := l.admit(f, ticks(at)); ok {
			slot.Store(entry)
			answered++
		}
	}
	if answered < 28 || answered > 34 {
		t.Errorf("the same bytes every 100ms for a minute: %d answered, want about 30", answered)
	}
}

// TestReplyLogCollidingLoopsDie: loops whose fingerprints fall in the same
// place in the log each die at their first reflection, as any other loop.
// Forgetting one to remember the other made two such loops overwrite each
// other's entry at every round and live forever: one in about forty runs of
// TestUDPLoopThroughAnEchoPeerDies's 60 loops hit it.
func TestReplyLogCollidingLoopsDie(t *testing.T) {
	var l replyLog
	// The same index bits, different tags.
	var loops []uint64
	for i := range uint64(replyLogWays) {
		loops = append(loops, 0x1234_5678_9abc_def0^i<<40)
	}
	// Each reply comes back 100ms later, well within the window, until
	// one is dropped and its loop is over.
	alive := make([]bool, len(loops))
	for round := range 10 {
		at := time.Duration(round) * 100 * time.Millisecond
		n := 0
		for i, f := range loops {
			if round > 0 && !alive[i] {
				continue
			}
			slot, entry, ok := l.admit(f, ticks(at))
			if ok {
				slot.Store(entry)
				n++
			}
			alive[i] = ok
		}
		if round == 0 && n != len(loops) {
			t.Fatalf("first round: %d of %d answered", n, len(loops))
		}
		if round > 0 && n > 0 {
			t.Fatalf("round %d: %d of %d loops in one place in the log still answered", round, n, len(loops))
		}
	}
}

// TestUDPGuardIsBounded: however many sources send, the guard's memory
// does not grow, and deciding allocates nothing.
func TestUDPGuardIsBounded(t *testing.T) {
	for _, s := range []*Server{{}, {UDPSourceRate: 1e6, UDPGlobalRate: 1e9}} {
		g := newUDPGuard(s)
		p := []byte("from everywhere")
		i := 0
		allocs := testing.AllocsPerRun(100_000, func() {
			i++
			src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(1024+i%60000))
			if _, ok := g.admit(src, p, g.now()); !ok {
				t.Fatalf("datagram %d from %v refused", i, src)
			}
		})
		if allocs != 0 {
			t.Errorf("admit allocates %.1f times per datagram (rates %d, %d)", allocs, s.UDPSourceRate, s.UDPGlobalRate)
		}
	}
}

// TestFingerprint: what makes two datagrams the same to the loop guard.
func TestFingerprint(t *testing.T) {
	g := newUDPGuard(&Server{})
	src := netip.MustParseAddrPort("192.0.2.1:40000")
	long := payload(1, 3*fingerprintSample)
	fp := func(src netip.AddrPort, p []byte) uint64 { return g.replies.fingerprint(src, p) }
	changed := func(p []byte, i int) []byte {
		q := append([]byte(nil), p...)
		q[i] ^= 1
		return q
	}
	for _, tt := range []struct {
		name string
		a, b uint64
		same bool
	}{
		{"the same datagram", fp(src, []byte("hi")), fp(src, []byte("hi")), true},
		{"IPv4 and IPv4-mapped", fp(src, []byte("hi")), fp(netip.MustParseAddrPort("[::ffff:192.0.2.1]:40000"), []byte("hi")), true},
		{"another port", fp(src, []byte("hi")), fp(netip.MustParseAddrPort("192.0.2.1:40001"), []byte("hi")), false},
		{"another address", fp(src, []byte("hi")), fp(netip.MustParseAddrPort("192.0.2.2:40000"), []byte("hi")), false},
		{"other bytes", fp(src, []byte("hi")), fp(src, []byte("ho")), false},
		{"empty and one zero byte", fp(src, nil), fp(src, []byte{0}), false},
		{"a long one, its first byte", fp(src, long), fp(src, changed(long, 0)), false},
		{"a long one, its last byte", fp(src, long), fp(src, changed(long, len(long)-1)), false},
		{"a long one, one byte longer", fp(src, long), fp(src, append(long[:len(long):len(long)], 0)), false},
		// What the guard does not look at, to keep its cost bounded.
		{"a long one, its middle", fp(src, long), fp(src, changed(long, len(long)/2)), true},
	} {
		if (tt.a == tt.b) != tt.same {
			t.Errorf("%s: same fingerprint %v, want %v", tt.name, tt.a == tt.b, tt.same)
		}
	}
}

// BenchmarkUDPGuardAdmit is the guard's cost per datagram (the clock read
// included, which the batching reader pays once per batch), from a new
// source with new bytes each time, with readers deciding at once.
func BenchmarkUDPGuardAdmit(b *testing.B) {
	for _, cfg := range udpBenchConfigs {
		for _, size := range []int{64, 1400, 65507} {
			b.Run(fmt.Sprintf("%s/%dB", cfg.name, size), func(b *testing.B) {
				g := newUDPGuard(cfg.srv())
				var readers atomic.Uint64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					p := make([]byte, size)
					binary.BigEndian.PutUint64(p[8:], readers.Add(1))
					for i := uint64(0); pb.Next(); i++ {
						binary.BigEndian.PutUint64(p, i)
						src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 40000)
						if _, ok := g.admit(src, p, g.now()); !ok {
							b.Fatalf("datagram %d refused", i)
						}
					}
				})
			})
		}
	}
}
