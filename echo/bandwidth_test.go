package echo

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/testkit"
)

func newLimiter(t *testing.T, cfg bandwidth.Config) *bandwidth.Limiter {
	t.Helper()
	l, err := bandwidth.New(time.Now(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestBandwidthPacesEchoLosingNothing: a client that sends 600 KB at once
// to a connection limited to 1 MB/s gets every byte back, in order, and no
// sooner than the rate allows; the server reads only as fast as it sends,
// so the rest waits in TCP's buffers and window (backpressure).
func TestBandwidthPacesEchoLosingNothing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, Bandwidth: newLimiter(t, bandwidth.Config{PerConn: 1e6})}
		c := dial(t, serveTCP(t, srv))
		const size = 600e3
		sent := make([]byte, size)
		pattern.NewStream(1).Read(sent)
		start := time.Now()
		go func() {
			c.Write(sent)
			c.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		took := time.Since(start)
		if err != nil || !bytes.Equal(got, sent) {
			t.Fatalf("echo of %d bytes: got %d, %v, equal %v", len(sent), len(got), err, bytes.Equal(got, sent))
		}
		// The burst (100 KB) at once, the rest at 1 MB/s: 0.5 s at least;
		// a slow machine only takes longer.
		if took < 450*time.Millisecond {
			t.Errorf("600 KB at 1 MB/s took %v, want 0.5s or more", took)
		}
		st := srv.Stats()
		if st.TCPBytesIn != size || st.TCPBytesOut != size {
			t.Errorf("Stats counted %d in, %d out; want %d each", st.TCPBytesIn, st.TCPBytesOut, int(size))
		}
	})
}

// TestBandwidthPausedConnectionCloses: Close and the idle timeout end a
// connection waiting for its budget, at once rather than when the wait is
// over.
func TestBandwidthPausedConnectionCloses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// 1 KB/s: the 64 KiB burst, then a wait of a minute per 64 KiB.
		srv := &Server{Engine: engine, IdleTimeout: time.Hour, Bandwidth: newLimiter(t, bandwidth.Config{PerConn: 1e3})}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		go io.Copy(io.Discard, c)
		c.Write(make([]byte, 256<<10)) // the burst, then a wait of minutes
		testkit.WaitFor(t, "the server to read", func() bool { return srv.Stats().TCPBytesIn >= 32<<10 })
		start := time.Now()
		srv.Close()
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Close took %v with a connection paused for its budget", took)
		}
	})
}

// TestEgressBudgetRefusesNewConnections: once the budget is spent, a new
// connection is refused and counted under egress-budget, and UDP goes
// unanswered.
func TestEgressBudgetRefusesNewConnections(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		lim := newLimiter(t, bandwidth.Config{Egress: bandwidth.Budget{Bytes: 100e3, Period: time.Hour}})
		srv := &Server{Engine: engine, Bandwidth: lim}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		roundTrip(t, c, make([]byte, 100e3))
		if !lim.Spent(time.Now()) {
			t.Fatalf("budget not spent after 100 KB: %+v", lim.Stats(time.Now()))
		}
		expectRefused(t, "127.0.0.1", addr)
		if n := srv.Stats().Limited[ReasonEgressBudget]; n != 1 {
			t.Errorf("%d refusals counted under egress-budget, want 1", n)
		}
		// The open connection goes on, at the budget's average rate.
		roundTrip(t, c, []byte("still here"))
	})
}

// TestUDPBandwidthDropsPastTheBudget: replies past an address's budget are
// dropped, and counted, while another address is answered.
func TestUDPBandwidthDropsPastTheBudget(t *testing.T) {
	srv := &Server{Bandwidth: newLimiter(t, bandwidth.Config{PerAddr: 1e3})}
	pc := testkit.ListenUDP(t, "127.0.0.1:0")
	serveUDPOn(t, srv, pc)
	client := testkit.ListenUDP(t, "127.0.0.1:0")
	msg := make([]byte, 1000)
	// The burst is 64 KiB: 65 datagrams of 1000 bytes; 100 go past it.
	// One at a time, as a burst of them could overflow the socket's buffer.
	for i := range 100 {
		msg[0] = byte(i) // not the same bytes: the loop guard would drop those
		if _, err := client.WriteTo(msg, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		testkit.WaitFor(t, "the datagram to arrive", func() bool { return srv.Stats().UDPDatagrams == uint64(i+1) })
	}
	st := srv.Stats()
	if st.UDPReplies > 66 || st.Limited[ReasonUDPBandwidth] < 34 {
		t.Errorf("%d replies, %d dropped for udp-bandwidth; want at most 66 (the burst) and the rest dropped",
			st.UDPReplies, st.Limited[ReasonUDPBandwidth])
	}
	other, err := net.ListenPacket("udp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2: %v", err)
	}
	defer other.Close()
	other.WriteTo([]byte("another address"), pc.LocalAddr())
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := other.ReadFrom(make([]byte, 64)); err != nil || n != len("another address") {
		t.Errorf("another address got %d bytes, %v; want its echo", n, err)
	}
}

// TestAdoptChargesAThrottledConnectionOnce: a connection the web echo's
// listener throttles, handed to the server that shares its Limiter, is
// charged for its bytes once, not by both.
func TestAdoptChargesAThrottledConnectionOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		lim := newLimiter(t, bandwidth.Config{Egress: bandwidth.Budget{Bytes: 1e12, Period: time.Hour}})
		srv := &Server{Engine: engine, Bandwidth: lim}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		t.Cleanup(func() { srv.Close() })
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			srv.Adopt(Handoff{Conn: lim.Conn(c, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())})
		}()
		c := dial(t, l.Addr().String())
		const size = 200e3
		go func() {
			c.Write(make([]byte, size))
			c.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil || len(got) != size {
			t.Fatalf("echo: %d bytes, %v", len(got), err)
		}
		if used := lim.Stats(time.Now()).Used; used < size || used > 1.5*size {
			t.Errorf("the budget counted %d bytes for an echo of %d, want it counted once (with headers)", used, int(size))
		}
	})
}
