package check

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
)

// throughPath starts a netsim proxy in front of addr for the test.
func throughPath(t *testing.T, addr string, path netsim.Path) string {
	t.Helper()
	p, err := netsim.Start(context.Background(), addr, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr()
}

// The simulated paths, their times scaled down. large runs on its
// own, below: 32 MiB through 1 MB/s takes half a minute.
var simulatedPaths = []struct {
	name string
	path netsim.Path
}{
	{"far and slow", netsim.Path{Delay: 30 * time.Millisecond, Jitter: 6 * time.Millisecond, Rate: 1_000_000, Segment: 536}},
	{"half-close turned into close", netsim.Path{CloseOnHalfClose: true}},
	{"idle connections closed", netsim.Path{IdleTimeout: 300 * time.Millisecond}},
	{"idle connections closed, far", netsim.Path{Delay: 30 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}},
}

// pathWords is what every failure a path causes must say.
var pathWords = regexp.MustCompile(`something between \(a (proxy or tunnel|NAT, load balancer or tunnel)\).*to tell, run the same check on the server's own machine \(if it passes there, it is the path\), or run echod path 127\.0\.0\.1:\d+$`)

// Through each path a correct server either passes or is told that the
// path may be the cause, on every line that fails.
func TestCorrectServerThroughPaths(t *testing.T) {
	addr := serveTCP(t, echoConn)
	for _, sim := range simulatedPaths {
		t.Run(sim.name, func(t *testing.T) {
			rep, err := Run(context.Background(), Config{Addr: throughPath(t, addr, sim.path), Run: regexp.MustCompile(`^[^l]`)})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				t.Log(r.Line(true))
				if r.Status == Fail && !pathWords.MatchString(r.Reason) {
					t.Errorf("%s does not name the path: %s", r.Name, r.Reason)
				}
			}
			if sim.path.CloseOnHalfClose && rep.Failed() == 0 {
				t.Errorf("every check passed through a path that closes at the half-close")
			}
		})
	}
}

// -protohackers sends as the real checker does, half-closing at once after
// its last write, so through any path its verdict is the same twice, and
// the one the real checker gives: a fail exactly where the path closes at
// the half-close. (Which of its sessions lose their echo there is a race
// between the echo and the close, as it is for the real checker.)
func TestProtohackersSameVerdictTwiceThroughPaths(t *testing.T) {
	addr := serveTCP(t, echoConn)
	for _, sim := range simulatedPaths {
		t.Run(sim.name, func(t *testing.T) {
			via := throughPath(t, addr, sim.path)
			for run := range 2 {
				rep, err := Run(context.Background(), Config{Addr: via, Protohackers: true})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rep.Results {
					t.Logf("run %d: %s", run+1, r.Line(false))
					if r.Status == Fail && !pathWords.MatchString(r.Reason) {
						t.Errorf("%s does not name the path: %s", r.Name, r.Reason)
					}
				}
				if rep.OK() == sim.path.CloseOnHalfClose {
					t.Errorf("run %d: ok=%v through a path with CloseOnHalfClose=%v", run+1, rep.OK(), sim.path.CloseOnHalfClose)
				}
			}
		})
	}
}

// A check's deadline stretches while the echo keeps arriving steadily, up
// to five times itself, and says why; past that it blames the speed, not
// the echo.
func TestSlowSteadyEchoIsNotAFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("takes 15s")
	}
	addr := serveTCP(t, echoConn)
	for _, tc := range []struct {
		name string
		size int64
		want *regexp.Regexp
	}{
		// 4 MiB at 1 MB/s takes 4.2 s.
		{"passes late", 4 << 20, regexp.MustCompile(`^4.0 MiB each way, verified; past its 3s deadline, the echo still arriving steadily at [\d.]+ KiB/s: a slow path or server, not a wrong one$`)},
		// 16 MiB, 17 s.
		{"too slow", 16 << 20, regexp.MustCompile(`^not finished within 15s \(\d+ of 16777216 bytes came back\): the echo was still arriving steadily at [\d.]+ KiB/s, 5 times the check's deadline of 3s: a slow path or server, not a wrong echo; to tell, run the same check on the server's own machine`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// The deadline leaves time for the steadiness it asks (2 s)
			// after making the pattern, which is slow under -race.
			c := Check{Name: "stream", Deadline: 3 * time.Second, Func: func(ctx context.Context, t *Target) (string, error) {
				conn, stop, err := t.dial(ctx, "tcp")
				if err != nil {
					return "", err
				}
				defer conn.Close()
				defer stop()
				o, s := streamPattern(ctx, conn, tc.size, 64<<10, t.Patience)
				if err := judgeStream(o, s, tc.size, t.Patience); err != nil {
					return "", err
				}
				return size(tc.size) + " each way, verified", nil
			}}
			target := &Target{Addr: throughPath(t, addr, netsim.Path{Rate: 1_000_000}), Patience: DefaultPatience}
			r, _ := runOne(context.Background(), c, target)
			t.Log(r.Line(true))
			text := r.Detail
			if r.Status == Fail {
				text = r.Reason
			}
			if !tc.want.MatchString(text) {
				t.Errorf("%s %q, want %q", r.Status, text, tc.want)
			}
		})
	}
}

// The shapes a path can make are told from the server's own bugs by when
// the close came.
func TestEarlyCloseShapes(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name string
		o    outcome
		want string // the error's type, or ""
	}{
		{"closed as the half-close arrived", outcome{lastWrite: at(0), halfClosed: at(1), eofAt: at(50)}, "half"},
		{"reset as the half-close arrived", outcome{lastWrite: at(0), halfClosed: at(1), readErr: syscall.ECONNRESET, readAt: at(50)}, "half"},
		{"closed at the half-close with the echo still flowing", outcome{lastWrite: at(0), halfClosed: at(1), lastData: at(4000), eofAt: at(4100)}, "half"},
		{"closed before the half-close", outcome{lastWrite: at(0), eofAt: at(50)}, ""},
		{"closed 300ms after the half-close, nothing back", outcome{lastWrite: at(0), halfClosed: at(1), eofAt: at(301)}, "half"},
		{"closed after 300ms idle", outcome{lastWrite: at(0), lastData: at(10), eofAt: at(310)}, "idle"},
		{"closed after 2s idle", outcome{lastWrite: at(0), lastData: at(10), eofAt: at(2010)}, "idle"},
		{"closed 2s after the half-close", outcome{lastWrite: at(0), halfClosed: at(1), eofAt: at(2001)}, "idle"},
		{"no close", outcome{lastWrite: at(0), halfClosed: at(1), readErr: context.DeadlineExceeded, readAt: at(5000)}, ""},
	} {
		err := earlyClose(10, 20, tc.o)
		var got string
		switch err.(type) {
		case *closedAtHalfClose:
			got = "half"
		case *closedIdle:
			got = "idle"
		}
		if got != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// A server that never echoes and closes connections quiet for a while
// (EOF or not) is told it does not echo, not that something closes idle
// connections.
func TestQuietCloseOfAServerThatDoesNotEcho(t *testing.T) {
	const quiet = 1200 * time.Millisecond
	addr := serveTCP(t, func(c *net.TCPConn, done <-chan struct{}) {
		defer c.Close()
		buf := make([]byte, 1024)
		last := time.Now()
		for {
			c.SetReadDeadline(last.Add(quiet))
			n, err := c.Read(buf)
			if n > 0 {
				last = time.Now()
			}
			if err == io.EOF {
				// Its timer, not the client's EOF, ends the connection.
				select {
				case <-time.After(time.Until(last.Add(quiet))):
				case <-done:
				}
				return
			}
			if err != nil {
				return
			}
		}
	})
	r := runChecks(t, Config{Addr: addr, Patience: 3 * time.Second}, "slow-client")["slow-client"]
	want := regexp.MustCompile(`^connection closed after 1\.\d+s with no byte either way, after 0 of 31 bytes came back, and a short message on an open connection got 0 of its 19 bytes back: the server does not echo all it reads`)
	if r.Status != Fail || !want.MatchString(r.Reason) || strings.Contains(r.Reason, "something between") {
		t.Errorf("slow-client: %s %q, want %q", r.Status, r.Reason, want)
	}
}

// A path that drops datagrams above its MTU is named beside the server.
func TestUDPThroughASmallMTU(t *testing.T) {
	p, err := netsim.StartUDP(context.Background(), serveUDP(t, 64<<10, udpEcho), netsim.Path{Segment: 1400})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r := runChecks(t, Config{UDPAddr: p.Addr()}, "udp-sizes")["udp-sizes"]
	want := regexp.MustCompile(`^no reply to a 1472-byte datagram in \d tries of \S+, though 512-byte ones were answered: the server drops large datagrams \(a small read buffer\), or something between does \(a path or tunnel whose MTU is smaller, without fragmentation\); echod path udp://127\.0\.0\.1:\d+ finds the largest`)
	if r.Status != Fail || !want.MatchString(r.Reason) {
		t.Errorf("udp-sizes: %s %q, want %q", r.Status, r.Reason, want)
	}
}

// A server that echoes only at EOF, behind a path that closes at the
// half-close, gets no echo at all: the line names the server's bug first,
// and the path as what the same check on the server's machine rules out.
func TestBuffersUntilEOFBehindAPathThatCloses(t *testing.T) {
	via := throughPath(t, serveTCP(t, buffersUntilEOF), netsim.Path{CloseOnHalfClose: true})
	r := runChecks(t, Config{Addr: via}, "all-bytes")["all-bytes"]
	want := "connection closed at the half-close, after 0 of 512 bytes came back, and an open connection gets no echo either: the server keeps the echo back and closes without sending it (an unflushed bufio.Writer does this: write back what each read returns, and Flush before closing); if the check passes on the server's own machine, something between closes at the half-close"
	if r.Status != Fail || r.Reason != want {
		t.Errorf("all-bytes: %s %q, want %q", r.Status, r.Reason, want)
	}
}
