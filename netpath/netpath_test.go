package netpath_test

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/target"
	"github.com/echod/echod/internal/testkit"
	"github.com/echod/echod/netpath"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer is a correct TCP echo server: it echoes, and closes its side
// after the client's half-close.
func echoServer(t *testing.T) string {
	return testkit.Serve(t, testkit.Listen(t), func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// through starts a proxy to addr with path until the test ends.
func through(t *testing.T, addr string, path netsim.Path) string {
	t.Helper()
	p, err := netsim.Start(context.Background(), addr, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// quick is a Config that keeps a test short: no idle probes unless the
// test asks for them.
func quick(t *testing.T, addr string) netpath.Config {
	t.Helper()
	tgt, err := target.Parse(addr)
	if err != nil {
		t.Fatal(err)
	}
	return netpath.Config{Target: tgt, Echoes: 10, Duration: 800 * time.Millisecond, MaxIdle: -1, Patience: 3 * time.Second, Bulk: 128 << 10}
}

func run(t *testing.T, cfg netpath.Config) *netpath.Report {
	t.Helper()
	r, err := netpath.Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range r.Findings {
		t.Logf("%s: %s", f.Topic, f.Text)
	}
	return r
}

// within reports whether got is within 25% of want.
func within(got, want float64) bool { return got >= want*0.75 && got <= want*1.25 }

func TestFarSlowPath(t *testing.T) {
	// Not parallel: the round trip is timed, and the other tests' bulk
	// echoes would take the CPU from the proxy's timers.
	// The far path (150 ms ± 30 ms one way, 1 MB/s, 536-byte
	// segments), its delays scaled down to keep the test short.
	const delay, jitter, rate = 30 * time.Millisecond, 6 * time.Millisecond, 1_000_000
	addr := through(t, echoServer(t), netsim.Path{Delay: delay, Jitter: jitter, Rate: rate, Segment: 536})
	r := run(t, quick(t, addr))
	// The least round trip is held to 25%: the median too would fail
	// whenever the machine is loaded enough to stall a few echoes.
	if r.RTT == nil || !within(float64(r.RTT.Min), float64(2*delay)) || r.RTT.P50 < r.RTT.Min {
		t.Errorf("round trip %+v, want a min within 25%% of %v", r.RTT, 2*delay)
	}
	if r.RTT != nil && r.RTT.Min < 2*(delay-jitter) {
		t.Errorf("round trip min %v is less than the path allows (%v)", r.RTT.Min, 2*(delay-jitter))
	}
	if tp := r.Throughput; tp == nil || !within(tp.One, rate) {
		t.Errorf("throughput %+v, want within 25%% of %d bytes/s", tp, rate)
	} else if tp.Limit != "shared" {
		t.Errorf("limit %q (two connections %.2f× one), want shared: the proxy's rate is shared", tp.Limit, tp.Ratio)
	}
	if in := r.Integrity; in == nil || !in.Intact() {
		t.Errorf("integrity %+v, want the echo intact", in)
	} else if runtime.GOOS == "linux" && (in.RecvMSS == 0 || in.RecvMSS > 536) {
		t.Errorf("segments of up to %d bytes seen, want at most 536", in.RecvMSS)
	}
	if hc := r.HalfClose; hc == nil || hc.Outcome != "half-close" {
		t.Errorf("half-close %+v through a path that passes it on", hc)
	}
}

func TestHalfCloseTurnedIntoClose(t *testing.T) {
	t.Parallel()
	addr := through(t, echoServer(t), netsim.Path{CloseOnHalfClose: true, Delay: 5 * time.Millisecond})
	r := run(t, quick(t, addr))
	if hc := r.HalfClose; hc == nil || hc.Outcome != "closed" || hc.Echoed == hc.Sent {
		t.Errorf("half-close %+v, want closed with the echo cut short", hc)
	}
	if in := r.Integrity; in == nil || !in.Intact() {
		t.Errorf("integrity %+v: the path does not tamper", in)
	}
}

func TestIdleTimeout(t *testing.T) {
	// Not parallel, for the timing, as TestFarSlowPath.
	const idle = 2 * time.Second
	addr := through(t, echoServer(t), netsim.Path{IdleTimeout: idle})
	cfg := quick(t, addr)
	cfg.MaxIdle = 5 * time.Second
	start := time.Now()
	r := run(t, cfg)
	if in := r.Idle; in == nil || !within(float64(in.ClosedAfter), float64(idle)) {
		t.Errorf("idle %+v, want closed after about %v", in, idle)
	}
	// The probes longer than the timeout stop when it shows, rather than
	// running to -max-idle.
	if took := time.Since(start); took > cfg.MaxIdle {
		t.Errorf("the run took %v, as long as -max-idle", took)
	}
}

func TestNoIdleTimeout(t *testing.T) {
	t.Parallel()
	cfg := quick(t, echoServer(t))
	cfg.MaxIdle = 2 * time.Second
	r := run(t, cfg)
	if in := r.Idle; in == nil || in.Survived != 2*time.Second || in.ClosedAfter != 0 || in.DiedBy != 0 {
		t.Errorf("idle %+v, want every probe echoed", in)
	}
}

func TestTampering(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind                      netsim.TamperKind
		changed, dropped, doubled int
	}{
		{netsim.Flip, 1, 0, 0},
		{netsim.Drop, 0, 1, 0},
		{netsim.Duplicate, 0, 0, 1},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			// The byte is in the bulk echo: the first connections are the
			// round-trip one (10 echoes of 32 bytes) and the bulk one.
			const at = 5000
			addr := through(t, echoServer(t), netsim.Path{Segment: 536, Tamper: netsim.Tamper{Kind: tc.kind, At: at}})
			cfg := quick(t, addr)
			cfg.Echoes = 1
			r := run(t, cfg)
			in := r.Integrity
			if in == nil || in.Changed != tc.changed || in.Dropped != tc.dropped || in.Duplicated != tc.doubled || (in.First != at && !(tc.kind == netsim.Duplicate && in.First == at+1)) {
				t.Errorf("integrity %+v, want %d changed, %d dropped, %d duplicated at byte %d", in, tc.changed, tc.dropped, tc.doubled, at)
			}
		})
	}
}

func TestUDP(t *testing.T) {
	t.Parallel()
	srv := testkit.ServeUDP(t, "127.0.0.1:0", 64<<10, func(p []byte) [][]byte { return [][]byte{p} })
	const delay, largest = 20 * time.Millisecond, 1200
	p, err := netsim.StartUDP(context.Background(), srv, netsim.Path{Delay: delay, Segment: largest})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r := run(t, quick(t, "udp://"+p.Addr()))
	if r.RTT == nil || !within(float64(r.RTT.P50), float64(2*delay)) {
		t.Errorf("round trip %+v, want about %v", r.RTT, 2*delay)
	}
	if dg := r.Datagrams; dg == nil || dg.Largest != largest || dg.Changed != 0 {
		t.Errorf("datagrams %+v, want %d bytes the largest, none changed", dg, largest)
	}
}

// A UDP path that forgets idle flows still echoes: the next datagram
// starts a new flow, as through a NAT. What path can see is whether the
// echo keeps coming.
func TestUDPIdle(t *testing.T) {
	t.Parallel()
	srv := testkit.ServeUDP(t, "127.0.0.1:0", 2048, func(p []byte) [][]byte { return [][]byte{p} })
	p, err := netsim.StartUDP(context.Background(), srv, netsim.Path{IdleTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cfg := quick(t, "udp://"+p.Addr())
	cfg.MaxIdle = time.Second
	r := run(t, cfg)
	if in := r.Idle; in == nil || in.Survived != time.Second || in.DiedBy != 0 {
		t.Errorf("idle %+v, want the echo after 1s idle", in)
	}
	// The server's 2048-byte buffer cuts larger datagrams: said so, and
	// not taken for tampering.
	if dg := r.Datagrams; dg == nil || dg.Largest != 2048 || dg.CutTo != 2048 || dg.Changed != 0 {
		t.Errorf("datagrams %+v, want 2048 whole and larger cut to 2048", dg)
	}
}

func TestUDPTampered(t *testing.T) {
	t.Parallel()
	srv := testkit.ServeUDP(t, "127.0.0.1:0", 2048, func(p []byte) [][]byte { return [][]byte{p} })
	p, err := netsim.StartUDP(context.Background(), srv, netsim.Path{Tamper: netsim.Tamper{Kind: netsim.Flip, At: 3}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r, err := netpath.Run(context.Background(), quick(t, "udp://"+p.Addr()))
	if !errors.Is(err, netpath.ErrNoEcho) || r.RTT == nil || r.RTT.Err != "10 of 10 datagrams came back, all changed: something alters them" {
		t.Errorf("Run = %+v, %v; want no echo, every datagram changed", r.RTT, err)
	}
}

func TestUnreachable(t *testing.T) {
	for _, addr := range []string{testkit.FreeAddr(t, "tcp"), "udp://" + testkit.FreeAddr(t, "udp")} {
		cfg := quick(t, addr)
		cfg.Patience = 300 * time.Millisecond
		if _, err := netpath.Run(context.Background(), cfg); !errors.Is(err, netpath.ErrUnreachable) {
			t.Errorf("Run(%s) = %v, want ErrUnreachable", addr, err)
		}
	}
}

// Interrupted, Run stops at once and reports no measurement it cut short:
// an idle probe that did not finish must not read as survived.
func TestInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := quick(t, echoServer(t))
	cfg.MaxIdle = time.Minute
	var seen []netpath.Finding
	cfg.Progress = func(f netpath.Finding) {
		seen = append(seen, f)
		if f.Topic == "throughput" {
			cancel()
		}
	}
	start := time.Now()
	r, err := netpath.Run(ctx, cfg)
	if !errors.Is(err, context.Canceled) || r.Idle != nil || r.HalfClose != nil {
		t.Errorf("Run = %v, idle %+v, half-close %+v; want cancelled, neither", err, r.Idle, r.HalfClose)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("took %v after the cancel", took)
	}
	for _, f := range seen {
		if strings.Contains(f.Text, "cancel") {
			t.Errorf("finding %q", f.Text)
		}
	}
}

// A connection that stays open but stops answering after its first echo,
// as one a NAT has forgotten does, reads as dead at the first probe, and
// the longer probes stop there.
func TestIdleSilentDeath(t *testing.T) {
	t.Parallel()
	srv := testkit.Serve(t, testkit.Listen(t), func(c net.Conn) {
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		c.Write(buf[:n])
		io.Copy(io.Discard, c)
	})
	cfg := quick(t, srv)
	cfg.MaxIdle, cfg.Patience, cfg.Echoes = 5*time.Second, 500*time.Millisecond, 1
	start := time.Now()
	r := run(t, cfg)
	in := r.Idle
	if in == nil || in.DiedBy != 1100*time.Millisecond || in.Survived != 0 || in.ClosedAfter != 0 {
		t.Fatalf("idle %+v, want dead by the first probe", in)
	}
	if last := in.Probes[len(in.Probes)-1]; last.Outcome != "cancelled" {
		t.Errorf("the longest probe %+v, want cancelled", last)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("the run took %v: the longer probes should stop", took)
	}
	if tp := r.Throughput; tp == nil || tp.One != 0 || !strings.HasPrefix(tp.Err, "the bulk echo stopped after 64 bytes: nothing came back for the last") {
		t.Errorf("throughput %+v, want the echo stopped", tp)
	}
}

// A timeout equal to the idle time probed is found as the close it is, not
// as a connection that died when the probe's echo went out.
func TestIdleTimeoutAtTheProbe(t *testing.T) {
	t.Parallel()
	const idle = 1100 * time.Millisecond // the first probe's idle time
	addr := through(t, echoServer(t), netsim.Path{IdleTimeout: idle})
	cfg := quick(t, addr)
	cfg.MaxIdle, cfg.Echoes = 2*time.Second, 1
	r := run(t, cfg)
	if in := r.Idle; in == nil || in.ClosedAfter == 0 || !within(float64(in.ClosedAfter), float64(idle)) {
		t.Errorf("idle %+v, want closed after about %v", in, idle)
	}
}
