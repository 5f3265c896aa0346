package echo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// debugLogger returns a logger that writes every line, debug included, to w.
func debugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// countFDs returns how many file descriptors this process has open.
func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// checkFDs fails the test if it ends with more file descriptors open than it
// started with. Call it first, so that its cleanup runs after all others.
func checkFDs(t *testing.T) {
	t.Helper()
	before := countFDs(t)
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for countFDs(t) > before {
			if time.Now().After(deadline) {
				t.Errorf("%d file descriptors open after the test, %d before", countFDs(t), before)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
}

// serveTCP serves srv on a fresh loopback port until the test ends.
func serveTCP(t testing.TB, srv *Server) string {
	t.Helper()
	return testkit.Start(t, func(l net.Listener) error { return srv.Serve(context.Background(), l) },
		func() { srv.Close() }, ErrServerClosed)
}

// dialFrom connects to addr from the loopback address local.
func dialFrom(t *testing.T, local, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// expectRefused checks that the server refuses a connection to addr from
// local: the connect fails, or the server closes it without echoing anything.
func expectRefused(t *testing.T, local, addr string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		return // reset before the handshake finished on this side
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("let me in"))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection over the limit read %d bytes, %v; want it closed", n, err)
	}
}

func TestMaxConnsRefusesTheEleventh(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		var log testkit.Buffer
		srv := &Server{Engine: engine, MaxConns: 10, Logger: debugLogger(&log)}
		addr := serveTCP(t, srv)
		var first []*net.TCPConn
		for i := range 10 {
			c := dial(t, addr)
			roundTrip(t, c, fmt.Appendf(nil, "client %d", i))
			first = append(first, c)
		}
		for range 6 {
			expectRefused(t, "127.0.0.1", addr)
		}
		// The first ten never noticed.
		for i, c := range first {
			roundTrip(t, c, fmt.Appendf(nil, "client %d still here", i))
		}
		st := srv.Stats()
		if st.Limited[ReasonMaxConns] != 6 || st.Conns != 10 || st.Accepted != 10 {
			t.Errorf("Stats = %+v; want 6 refused for max-conns, 10 open, 10 accepted", st)
		}
		// Six refusals, one log line: the rest wait for the next summary.
		// The event loop leaves the writing to a timer, so it may come a
		// moment after the refusals.
		waitFor(t, "the first summary line", func() bool { return strings.Contains(log.String(), "limits applied") })
		if n := strings.Count(log.String(), "limits applied"); n != 1 {
			t.Errorf("%d summary lines for 6 refusals, want 1:\n%s", n, log.String())
		}

		// A freed place is taken by the next client.
		first[0].Close()
		waitFor(t, "the server to close its end", func() bool { return srv.Stats().Conns == 9 })
		roundTrip(t, dial(t, addr), []byte("my turn"))
	})
}

func TestLimitSummaryIsLoggedAtClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		var log testkit.Buffer
		srv := &Server{Engine: engine, MaxConns: 1, Logger: debugLogger(&log)}
		addr := serveTCP(t, srv)
		roundTrip(t, dial(t, addr), []byte("the one"))
		for range 3 {
			expectRefused(t, "127.0.0.1", addr)
		}
		// The first refusal is logged at once (the event loops' by a
		// timer's goroutine, with any counted meanwhile), long before the
		// 10 s interval, the rest at close.
		if !testkit.Eventually(2*time.Second, func() bool { return strings.Contains(log.String(), "limits applied") }) {
			t.Fatalf("no summary line soon after the first refusal:\n%s", log.String())
		}
		srv.Close()
		var lines, sum int
		for line := range strings.Lines(log.String()) {
			if _, count, ok := strings.Cut(line, "count.max-conns="); ok {
				n, _ := strconv.Atoi(strings.Fields(count)[0])
				lines, sum = lines+1, sum+n
			}
		}
		if sum != 3 || lines > 2 {
			t.Errorf("%d refusals told in %d summary lines, want 3 in at most 2:\n%s", sum, lines, log.String())
		}
	})
}

func TestMaxConnsPerIP(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		srv := &Server{Engine: engine, MaxConnsPerIP: 2}
		addr := serveTCP(t, srv)
		a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
		roundTrip(t, a1, []byte("a1"))
		roundTrip(t, a2, []byte("a2"))
		expectRefused(t, "127.0.0.1", addr)
		// Other addresses have their own allowance.
		for _, ip := range []string{"127.0.0.2", "127.0.0.3"} {
			roundTrip(t, dialFrom(t, ip, addr), []byte("from "+ip))
			roundTrip(t, dialFrom(t, ip, addr), []byte("again from "+ip))
		}
		roundTrip(t, a1, []byte("a1 unaffected"))
		if got := srv.Stats().Limited[ReasonMaxConnsPerIP]; got != 1 {
			t.Errorf("refused %d for max-conns-per-ip, want 1", got)
		}
		// When one closes, its address may open another.
		a2.Close()
		waitFor(t, "the server to close a2", func() bool { return srv.Stats().Conns == 5 })
		roundTrip(t, dialFrom(t, "127.0.0.1", addr), []byte("a3"))
		srv.places.mu.Lock()
		entries := len(srv.places.perIP)
		srv.places.mu.Unlock()
		if entries != 3 {
			t.Errorf("per-IP table has %d entries for 3 addresses", entries)
		}
	})
}

// waitClosed waits for the server to close c and returns how long it took.
func waitClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		_, err := c.Read(make([]byte, 64<<10))
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal("the server did not close the connection")
		}
		if err != nil {
			return time.Since(start)
		}
	}
}

func TestIdleTimeoutClosesSilentClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		// A second, so that a busy machine holding the test up between
		// the connect and the round trip does not close it first.
		srv := &Server{Engine: engine, IdleTimeout: time.Second}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		// The server's last progress, its echo, comes after this.
		start := time.Now()
		roundTrip(t, c, []byte("then silence"))
		waitClosed(t, c)
		if took := time.Since(start); took < time.Second {
			t.Errorf("closed after %v of silence, before the 1s idle timeout", took)
		}
		waitFor(t, "the idle timeout to be counted", func() bool { return srv.Stats().Limited[ReasonIdleTimeout] == 1 })
	})
}

func TestIdleTimeoutKeepsSlowActiveClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// The timeout is ten ticks, so that a test goroutine that a busy
		// machine holds up for most of a second is not taken for idle.
		srv := &Server{Engine: engine, IdleTimeout: time.Second}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		// One byte every 100ms for two idle timeouts: slow, never idle.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := range 20 {
			<-tick.C
			roundTrip(t, c, []byte{byte('a' + i)})
		}
		if n := srv.Stats().Limited[ReasonIdleTimeout]; n != 0 {
			t.Fatalf("%d connections closed as idle", n)
		}
	})
}

func TestIdleTimeoutKeepsSlowReader(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// Made first: under the race detector this takes longer than the
		// idle timeout, which would rightly close a connection already open.
		const size = 8 << 20
		msg := payload(3, size)
		srv := &Server{Engine: engine, IdleTimeout: 1500 * time.Millisecond}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		// The client sends 8 MiB at once, more than the socket buffers hold,
		// and reads it back slowly, for longer than the idle timeout in all
		// (at least 86 ticks of 25ms). The server sees progress only when
		// a good part of its send buffer (up to megabytes) has drained, a
		// dozen or so reads, so the timeout leaves room for a busy machine
		// holding the reader up.
		// Every byte must arrive: once the server has queued its last write and
		// the client sends nothing more, the server may close, but the bytes in
		// flight are delivered before the FIN.
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(msg)
			errc <- err
		}()
		got := make([]byte, 0, size)
		buf := make([]byte, 96<<10)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for len(got) < size {
			<-tick.C
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("after %d of %d bytes: %v", len(got), size, err)
			}
			got = append(got, buf[:n]...)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatal("echo differs")
		}
	})
}

func TestIdleTimeoutKeepsReaderSlowerThanTheTimeout(t *testing.T) {
	// Over a pipe, the server's write of a whole buffer (32 reads of 1 KiB,
	// 40ms apart) takes more than twice the idle timeout, yet bytes move
	// every 40ms; the timeout is long enough that a busy machine holding
	// the reader up is not taken for idle.
	srv := &Server{IdleTimeout: 500 * time.Millisecond}
	client := servePipes(t, srv).dial(t)
	const size = 48 << 10
	msg := payload(4, size)
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(msg)
		errc <- err
	}()
	got := make([]byte, 0, size)
	buf := make([]byte, 1024)
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for len(got) < size {
		<-tick.C
		client.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := client.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), size, err)
		}
		got = append(got, buf[:n]...)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo differs")
	}
	// Now the client is silent, and the timeout applies.
	waitFor(t, "the idle timeout", func() bool { return srv.Stats().Conns == 0 })
	if n := srv.Stats().Limited[ReasonIdleTimeout]; n != 1 {
		t.Fatalf("counted %d idle timeouts, want 1 after the client fell silent", n)
	}
}

func TestIdleTimeoutClosesClientThatNeverReads(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		srv := &Server{Engine: engine, IdleTimeout: 200 * time.Millisecond}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		// The client writes until the socket buffers both ways are full and
		// never reads: the server's write stalls, which is no progress.
		c.SetWriteDeadline(time.Now().Add(20 * time.Second))
		chunk := make([]byte, 64<<10)
		for {
			if _, err := c.Write(chunk); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the server never closed a client that does not read")
				}
				break // reset by the server
			}
			if srv.Stats().Limited[ReasonIdleTimeout] == 1 {
				break
			}
		}
		waitFor(t, "the idle timeout to be counted", func() bool { return srv.Stats().Limited[ReasonIdleTimeout] == 1 })
		waitFor(t, "the connection to be gone", func() bool { return srv.Stats().Conns == 0 })
	})
}

func TestMaxSessionDuration(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		srv := &Server{Engine: engine, MaxSessionDuration: 300 * time.Millisecond, IdleTimeout: time.Minute}
		addr := serveTCP(t, srv)
		// The server's clock starts after this one.
		start := time.Now()
		c := dial(t, addr)
		// An active client is closed all the same once its time is up.
		var err error
		for err == nil {
			if _, err = c.Write([]byte("busy")); err == nil {
				_, err = io.ReadFull(c, make([]byte, 4))
			}
			if time.Since(start) > 20*time.Second {
				t.Fatal("still open after 20s")
			}
		}
		if took := time.Since(start); took < 300*time.Millisecond {
			t.Errorf("closed after %v, before the 300ms limit", took)
		}
		waitFor(t, "the limit to be counted", func() bool { return srv.Stats().Limited[ReasonMaxSessionDuration] == 1 })
		if n := srv.Stats().Limited[ReasonIdleTimeout]; n != 0 {
			t.Errorf("counted as idle-timeout %d times", n)
		}
	})
}

func TestMaxSessionBytes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		srv := &Server{Engine: engine, MaxSessionBytes: 1000}
		addr := serveTCP(t, srv)

		// Exactly the allowance is echoed, then the connection closes.
		c := dial(t, addr)
		roundTrip(t, c, payload(1, 600))
		roundTrip(t, c, payload(2, 400))
		waitClosed(t, c)

		// A client that sends more in one go gets the first 1000 bytes back.
		c = dial(t, addr)
		msg := payload(3, 1500)
		c.Write(msg)
		got := make([]byte, 1000)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the first 1000 bytes back: %v", err)
		}
		if !bytes.Equal(got, msg[:1000]) {
			t.Fatal("echo differs")
		}
		waitClosed(t, c)
		waitFor(t, "the limit to be counted", func() bool { return srv.Stats().Limited[ReasonMaxSessionBytes] == 2 })
	})
}

func TestReasonsHaveDistinctNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Reasons() {
		name := r.String()
		if name == "unknown" || seen[name] {
			t.Errorf("reason %d is named %q", r, name)
		}
		seen[name] = true
	}
	if len(Reasons()) != len((&Server{}).Stats().Limited) {
		t.Error("Stats().Limited does not hold every reason")
	}
}

func TestAcceptErrorsAreLoggedOncePerInterval(t *testing.T) {
	var log testkit.Buffer
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for range 6 {
		errs = append(errs, &net.OpError{Op: "accept", Err: syscall.EMFILE})
	}
	l := &flakyListener{Listener: inner, errs: errs}
	srv := &Server{Logger: debugLogger(&log)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	defer func() {
		srv.Close()
		<-done
	}()
	roundTrip(t, dial(t, inner.Addr().String()), []byte("served after six failed accepts"))
	if n := strings.Count(log.String(), "accept failed"); n != 1 {
		t.Errorf("%d log lines for 6 failed accepts, want 1:\n%s", n, log.String())
	}
	if n := srv.Stats().AcceptErrors; n != 6 {
		t.Errorf("Stats().AcceptErrors = %d, want 6", n)
	}
}

// BenchmarkEchoRoundTripLimits measures what the session limits cost per
// round trip: each engine with no limits, and with echod serve's defaults
// (a 5-minute idle timeout, a connection limit) plus a session duration and
// byte limit that are never reached.
func BenchmarkEchoRoundTripLimits(b *testing.B) {
	for _, engine := range testEngines() {
		for _, limits := range []string{"none", "all"} {
			b.Run(engine+"/"+limits, func(b *testing.B) {
				srv := &Server{Engine: engine}
				if limits == "all" {
					srv.MaxConns = 10000
					srv.MaxConnsPerIP = 100
					srv.IdleTimeout = 5 * time.Minute
					srv.MaxSessionDuration = time.Hour
					srv.MaxSessionBytes = 1 << 50
				}
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- srv.Serve(context.Background(), l) }()
				defer func() {
					srv.Close()
					<-done
				}()
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				msg := make([]byte, 64)
				got := make([]byte, 64)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Write(msg); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, got); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// slogJSON returns a logger that writes every line, debug included, to w
// as JSON, for tests that read its fields.
func slogJSON(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestAbsurdlyLongLimitsMeanVeryLong(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// The largest durations there are: an idle timeout plus an eighth
		// of it overflows into the past unless it is clamped, and every
		// connection would be closed at once.
		srv := &Server{Engine: engine, IdleTimeout: math.MaxInt64, MaxSessionDuration: math.MaxInt64,
			MaxSessionBytes: math.MaxInt64}
		addr := serveTCP(t, srv)
		c := dial(t, addr)
		for i := range 3 {
			roundTrip(t, c, payload(uint64(i), 40<<10))
		}
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after half-close: read %d bytes, %v; want EOF", len(rest), err)
		}
		for r, n := range srv.Stats().Limited {
			if n != 0 {
				t.Errorf("%d connections ended by %v", n, r)
			}
		}
	})
}

func TestLimitSummariesTellEveryCount(t *testing.T) {
	forEachEngine(t, testLimitSummaries)
}

func testLimitSummaries(t *testing.T, engine string) {
	var log testkit.Buffer
	srv := &Server{Engine: engine, MaxConns: 1, Logger: slogJSON(&log)}
	srv.limitLog.every = 500 * time.Millisecond
	addr := serveTCP(t, srv)
	roundTrip(t, dial(t, addr), []byte("the one"))
	const refused = 7
	start := time.Now()
	for range refused {
		expectRefused(t, "127.0.0.1", addr)
	}
	// The first refusal is logged at once (with any counted while its
	// line is written), the others at the end of an interval, although no
	// refusal follows to trigger a line: every count is in a line, and
	// lines come at most one per interval.
	type summary struct {
		Time  time.Time
		Msg   string
		Count map[string]uint64
	}
	summaries := func() (lines []summary, n uint64) {
		for line := range strings.Lines(log.String()) {
			var rec summary
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "limits applied" {
				lines = append(lines, rec)
				n += rec.Count["max-conns"]
			}
		}
		return lines, n
	}
	waitFor(t, "the summaries to tell every refusal", func() bool { _, n := summaries(); return n == refused })
	lines, _ := summaries()
	if first := lines[0].Time.Sub(start); first >= srv.limitLog.every {
		t.Errorf("the first summary came %v after the first refusal, held back for the %v interval", first, srv.limitLog.every)
	}
	for i := 1; i < len(lines); i++ {
		// The time in a line is taken just after the throttle's.
		if gap := lines[i].Time.Sub(lines[i-1].Time); gap < srv.limitLog.every-10*time.Millisecond {
			t.Errorf("summary %d came %v after the one before, within the %v interval", i, gap, srv.limitLog.every)
		}
	}
	if got := srv.Stats().Limited[ReasonMaxConns]; got != refused {
		t.Errorf("Stats counts %d refusals, want %d", got, refused)
	}
}

func TestConnectionEndsAllocateNothingWithoutDebugLogging(t *testing.T) {
	for _, logger := range []*slog.Logger{nil, slog.New(slog.NewTextHandler(io.Discard, nil))} {
		srv := &Server{Logger: logger, MaxConnsPerIP: 10}
		remote := netip.MustParseAddrPort("192.0.2.1:4000")
		allocs := testing.AllocsPerRun(100, func() {
			if !srv.admit(remote.Addr(), nil) {
				t.Fatal("refused")
			}
			srv.connEnded(nil, remote.String, ended{source: remote.Addr(), reason: endEOF})
		})
		if allocs != 0 {
			t.Errorf("Logger %v: %v allocations per connection", logger, allocs)
		}
	}
}
