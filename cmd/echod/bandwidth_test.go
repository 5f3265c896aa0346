package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/testkit"
)

// hog sends to c as fast as it takes, and counts into got what comes back,
// until ctx ends: a client after all the bandwidth it can get.
func hog(ctx context.Context, wg *sync.WaitGroup, c net.Conn, got *atomic.Int64) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	wg.Go(func() {
		chunk := make([]byte, 16<<10)
		for ctx.Err() == nil {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	wg.Go(func() {
		defer stop()
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			got.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
}

// dialWebSocket opens a WebSocket echo from the loopback address src, as a
// net.Conn of binary messages.
func dialWebSocket(ctx context.Context, t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("WebSocket from %s: %v", src, err)
	}
	c.SetReadLimit(1 << 20)
	return websocket.NetConn(ctx, c, websocket.MessageBinary)
}

// TestRatePerIPAcrossTransports is issue 20's "done when": with a 1 MB/s
// budget per address, one address with 8 TCP connections and 8 WebSockets
// is sent at most 1.1 MB/s, and a second address, beside it, its own full
// budget. The bounds are on bytes counted over a window of seconds, so a
// slow machine can only make them easier to meet.
func TestRatePerIPAcrossTransports(t *testing.T) {
	for _, engine := range engines() {
		t.Run(engine, func(t *testing.T) {
			byProto, _ := startServeAll(t, 2, "-engine", engine, "-listen", "127.0.0.1:0",
				"-http-listen", "127.0.0.1:0", "-rate-per-ip", "1MB/s")
			tcp, web := byProto["tcp"][0], byProto["http"][0]
			testkit.DialFrom(t, "127.0.0.2", tcp).Close() // skips where 127.0.0.2 is not usable

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer cancel()
			var hogged, other atomic.Int64
			for range 8 {
				hog(ctx, &wg, testkit.DialFrom(t, "127.0.0.1", tcp), &hogged)
				hog(ctx, &wg, dialWebSocket(ctx, t, "127.0.0.1", web), &hogged)
			}
			hog(ctx, &wg, testkit.DialFrom(t, "127.0.0.2", tcp), &other)
			hog(ctx, &wg, dialWebSocket(ctx, t, "127.0.0.2", web), &other)

			// The first second spends the bursts; then a window of three.
			testkit.WaitFor(t, "echo to flow", func() bool { return hogged.Load() > 0 && other.Load() > 0 })
			time.Sleep(time.Second) // a measurement window, not synchronization
			start, h0, o0 := time.Now(), hogged.Load(), other.Load()
			time.Sleep(3 * time.Second)
			took := time.Since(start).Seconds()
			h, o := float64(hogged.Load()-h0)/took, float64(other.Load()-o0)/took
			t.Logf("%s: 127.0.0.1 (8 TCP + 8 WebSocket) got %.3f MB/s, 127.0.0.2 (1 + 1) got %.3f MB/s", engine, h/1e6, o/1e6)
			if h > 1.1e6+64e3/took {
				t.Errorf("the address with 16 connections got %.0f bytes/s, want at most 1.1 MB/s", h)
			}
			if o < 0.5e6 {
				t.Errorf("the other address got %.0f bytes/s, want its own budget, 1 MB/s", o)
			}
		})
	}
}

// TestBandwidthFlagsUsage checks that a wrong rate or budget is a usage
// error naming the flag and what is wrong.
func TestBandwidthFlagsUsage(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{"-rate-per-ip 8Mb/s", `-rate-per-ip: "8Mb" is in bits`},
		{"-rate-per-conn 1MB/h", `-rate-per-conn: "1MB/h" is not per second`},
		{"-rate-per-ip -1MB", `-rate-per-ip: "-1MB" is negative`},
		{"-egress-budget 500GB", `-egress-budget: "500GB" has no period`},
		{"-egress-budget 500GB/2s", "out of range"},
	} {
		code, _, stderr := runCmd(t, nil, append([]string{"serve"}, strings.Fields(tc.args)...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("serve %s: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// engines lists the engines to test a behaviour with: both, where both run.
func engines() []string {
	if runtime.GOOS == "linux" {
		return []string{"goroutine", "epoll"}
	}
	return []string{"goroutine"}
}

// TestEgressBudgetSpentRefusesEverySession: once the egress budget is
// spent, every transport refuses new sessions and says why where it can: a
// TCP connection is reset, an HTTP request and a WebSocket upgrade get 503
// with the reason, a datagram goes unanswered; the log and /metrics say so.
func TestEgressBudgetSpentRefusesEverySession(t *testing.T) {
	byProto, log := startServeAll(t, 4, "-listen", "127.0.0.1:0", "-udp", "-http-listen", "127.0.0.1:0",
		"-admin", "127.0.0.1:0", "-egress-budget", "100KB/1h")
	tcp, udp, web, admin := byProto["tcp"][0], byProto["udp"][0], byProto["http"][0], byProto["http"][1]

	c := testkit.Dial(t, tcp)
	echoOn(t, c, strings.Repeat("x", 100e3))
	testkit.WaitFor(t, "the log to say the budget is spent", func() bool {
		return strings.Contains(log.String(), "egress budget spent")
	})

	if !refused(tcp) {
		t.Error("a TCP connection was served once the budget was spent")
	}
	code, body := testkit.Get(t, "http://"+web+"/")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "egress budget of 100KB/1h0m0s spent") {
		t.Errorf("GET once spent: %d %q; want 503 naming the budget", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	if _, resp, err := websocket.Dial(ctx, "ws://"+web+"/", &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("WebSocket upgrade once spent: %v; want 503", err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ua, _ := net.ResolveUDPAddr("udp", udp)
	pc.WriteTo([]byte("anyone?"), ua)
	m := waitMetric(t, admin, "the dropped datagram", func(m map[string]float64) bool {
		return m[`echod_rejected_total{reason="egress-budget"}`] >= 2
	})
	if m["echod_egress_stage"] != 2 || m["echod_egress_used_bytes"] < 100e3 {
		t.Errorf("stage %v, used %v; want 2 (spent) and 100 KB or more", m["echod_egress_stage"], m["echod_egress_used_bytes"])
	}
	// The open session goes on, slowly.
	echoOn(t, c, "still here")
}

// TestRatePerConnPacesTLS: TLS echo, served on goroutines whatever the
// engine, keeps to -rate-per-conn as plain TCP does, and loses nothing.
func TestRatePerConnPacesTLS(t *testing.T) {
	addr, cfg, _ := startTLSWith(t, "-rate-per-conn", "1MB/s")
	c := dialTLS(t, addr, cfg)
	const size = 600e3
	start := time.Now()
	written := make(chan error, 1)
	go func() {
		_, err := io.CopyN(c, pattern.NewStream(3), size)
		if err == nil {
			err = c.CloseWrite()
		}
		written <- err
	}()
	v := pattern.NewVerifier(io.LimitReader(pattern.NewStream(3), size))
	_, err := io.Copy(v, c)
	if werr := <-written; werr != nil || err != nil || v.Verified() != size {
		t.Fatalf("%d of %d bytes verified: %v, %v", v.Verified(), int(size), err, werr)
	}
	// The burst (100 KB) at once, the rest at 1 MB/s: half a second at
	// least; a slow machine only takes longer.
	if took := time.Since(start); took < 450*time.Millisecond {
		t.Errorf("600 KB of TLS echo at 1 MB/s took %v, want 0.5s or more", took)
	}
}
