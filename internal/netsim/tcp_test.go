package netsim_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer echoes each TCP connection and half-closes after the client's
// half-close.
func echoServer(t *testing.T) string {
	return testkit.Serve(t, testkit.Listen(t), func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
}

// through starts a proxy to target with path, closed when the test ends.
func through(t *testing.T, target string, path netsim.Path) *netsim.Proxy {
	t.Helper()
	p, err := netsim.Start(context.Background(), target, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// roundTrip writes one byte to c and returns how long its echo took.
func roundTrip(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

func TestDelayAddsToEachDirection(t *testing.T) {
	const delay = 30 * time.Millisecond
	p := through(t, echoServer(t), netsim.Path{Delay: delay})
	c := testkit.Dial(t, p.Addr())
	// Every round trip takes at least the delay both ways; the least of
	// several takes not much more (a loaded machine stalls some, rarely
	// all), which fails a proxy that delays twice per hop.
	least := time.Hour
	for range 5 {
		rtt := roundTrip(t, c)
		if rtt < 2*delay {
			t.Errorf("round trip took %v through %v each way", rtt, delay)
		}
		least = min(least, rtt)
	}
	if least > 2*delay+50*time.Millisecond {
		t.Errorf("the least of 5 round trips took %v through %v each way, want about %v", least, delay, 2*delay)
	}
}

func TestJitterKeepsOrder(t *testing.T) {
	p := through(t, echoServer(t), netsim.Path{Delay: 5 * time.Millisecond, Jitter: 5 * time.Millisecond, Segment: 100})
	c := testkit.Dial(t, p.Addr())
	want := make([]byte, 64<<10)
	pattern.NewStream(1).Read(want)
	var wg sync.WaitGroup
	wg.Go(func() {
		// Many small writes make many chunks, each with its own delay.
		for b := want; len(b) > 0; b = b[min(len(b), 700):] {
			c.Write(b[:min(len(b), 700)])
		}
		c.CloseWrite()
	})
	got, err := io.ReadAll(c)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if i := pattern.FirstDiff(got, want); i >= 0 || len(got) != len(want) {
		t.Fatalf("echo through a jittery path differs at byte %d (%d of %d bytes came back)", i, len(got), len(want))
	}
}

func TestRateCapsEachDirection(t *testing.T) {
	const rate, size = 1 << 20, 256 << 10
	for _, conns := range []int{1, 2} {
		t.Run(fmt.Sprint(conns, " connections"), func(t *testing.T) {
			p := through(t, echoServer(t), netsim.Path{Rate: rate})
			start := time.Now()
			var wg sync.WaitGroup
			for range conns {
				// The connections share the rate as a link's bandwidth is
				// shared: together they take as long as one would alone.
				c := testkit.Dial(t, p.Addr())
				go func() {
					c.Write(make([]byte, size/conns))
					c.CloseWrite()
				}()
				wg.Go(func() {
					if n, err := io.Copy(io.Discard, c); err != nil || n != int64(size/conns) {
						t.Errorf("echoed %d of %d bytes: %v", n, size/conns, err)
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			// Both directions run at once, so the echo takes size/rate,
			// less the short burst the pacer allows.
			if min := time.Duration(size) * time.Second / rate * 9 / 10; took < min {
				t.Errorf("%d bytes echoed in %v through %d bytes/s, want at least %v", size, took, rate, min)
			}
		})
	}
}

func TestSegmentCutsWrites(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segment int
		wantMax int // the largest read most reads stay within
	}{
		{"cut into 536", 536, 536},
		{"whole", 0, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reads := make(chan []int, 1)
			srv := testkit.Serve(t, testkit.Listen(t), func(c net.Conn) {
				var sizes []int
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						sizes = append(sizes, n)
					}
					if err != nil {
						break
					}
				}
				reads <- sizes
			})
			// A slow rate spaces the segments 5 ms apart, so the server
			// reads each on its own rather than several coalesced.
			p := through(t, srv, netsim.Path{Segment: tc.segment, Rate: 100 << 10})
			c := testkit.Dial(t, p.Addr())
			if _, err := c.Write(make([]byte, 4096)); err != nil {
				t.Fatal(err)
			}
			c.CloseWrite()
			sizes := <-reads
			within := 0
			for _, n := range sizes {
				if n <= tc.segment {
					within++
				}
			}
			if tc.segment > 0 && within*10 < len(sizes)*9 {
				t.Errorf("server read %v, want most reads of at most %d bytes", sizes, tc.segment)
			}
			if tc.segment == 0 && slices.Max(sizes) < tc.wantMax/2 {
				t.Errorf("server read %v, want the 4096-byte write in large reads", sizes)
			}
		})
	}
}

func TestHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name  string
		close bool
		want  string
	}{
		{"passed on", false, "hello"},
		{"turned into close", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The server answers only after the client's half-close, so
			// the answer comes back only if the half-close arrived as one.
			srv := testkit.Serve(t, testkit.Listen(t), func(c net.Conn) {
				b, _ := io.ReadAll(c)
				c.Write(b)
			})
			p := through(t, srv, netsim.Path{CloseOnHalfClose: tc.close})
			c := testkit.Dial(t, p.Addr())
			c.Write([]byte("hello"))
			c.CloseWrite()
			got, err := io.ReadAll(c)
			if string(got) != tc.want {
				t.Errorf("after a half-close read %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

func TestIdleTimeoutClosesQuietConnections(t *testing.T) {
	const idle = 200 * time.Millisecond
	p := through(t, echoServer(t), netsim.Path{IdleTimeout: idle})
	c := testkit.Dial(t, p.Addr())
	// Traffic more often than the timeout keeps the connection open past it.
	start := time.Now()
	for time.Since(start) < 2*idle {
		time.Sleep(idle / 4) // pacing the traffic, not waiting for a state
		roundTrip(t, c)
	}
	quiet := time.Now()
	n, err := c.Read(make([]byte, 1))
	took := time.Since(quiet)
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes, %v on an idle connection, want it closed", n, err)
	}
	if took < idle*9/10 || took > idle+500*time.Millisecond {
		t.Errorf("idle connection closed after %v, want after about %v", took, idle)
	}
}

func TestTamper(t *testing.T) {
	want := make([]byte, 1000)
	pattern.NewStream(2).Read(want)
	for _, tc := range []struct {
		kind netsim.TamperKind
		want func() []byte
	}{
		{netsim.NoTamper, func() []byte { return want }},
		{netsim.Flip, func() []byte {
			b := slices.Clone(want)
			b[600] ^= 0xff
			return b
		}},
		{netsim.Drop, func() []byte { return slices.Delete(slices.Clone(want), 600, 601) }},
		{netsim.Duplicate, func() []byte { return slices.Insert(slices.Clone(want), 600, want[600]) }},
	} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			// Small segments put the byte in the middle of a later write.
			p := through(t, echoServer(t), netsim.Path{Segment: 536, Tamper: netsim.Tamper{Kind: tc.kind, At: 600}})
			c := testkit.Dial(t, p.Addr())
			go func() {
				for b := want; len(b) > 0; b = b[min(len(b), 100):] {
					c.Write(b[:min(len(b), 100)])
				}
				c.CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if w := tc.want(); !bytes.Equal(got, w) {
				t.Errorf("echo differs from the expected at byte %d (%d bytes, want %d)", pattern.FirstDiff(got, w), len(got), len(w))
			}
		})
	}
}

func TestCloseEndsConnectionsAndWaits(t *testing.T) {
	p, err := netsim.Start(context.Background(), echoServer(t), netsim.Path{Delay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := testkit.Dial(t, p.Addr())
	c.Write([]byte("held for an hour"))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection outlived its proxy's Close")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Error("the proxy still accepts after Close")
	}
}

func TestContextEndsProxy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := netsim.Start(ctx, echoServer(t), netsim.Path{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := testkit.Dial(t, p.Addr())
	roundTrip(t, c)
	cancel()
	_, err = c.Read(make([]byte, 1))
	if err == nil {
		t.Error("a connection outlived its proxy's context")
	}
}

func TestBadPath(t *testing.T) {
	for _, path := range []netsim.Path{
		{Delay: -1},
		{Rate: -1},
		{Segment: -1},
		{Tamper: netsim.Tamper{Kind: 99}},
	} {
		if p, err := netsim.Start(context.Background(), "127.0.0.1:1", path); err == nil {
			p.Close()
			t.Errorf("Start accepted %+v", path)
		}
	}
}
