package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/testkit"
)

// These benchmarks put the WebSocket echo beside echod's own TCP echo,
// measured in the same run: round trips of a small message, and the memory
// an idle connection costs.
//
//	go test ./web -run XXX -bench . -benchtime 3s

// startEcho serves echo.Server with engine on a loopback listener until
// the benchmark ends.
func startEcho(b *testing.B, engine string) string {
	b.Helper()
	srv := &echo.Server{Engine: engine}
	return testkit.Start(b, func(l net.Listener) error { return srv.Serve(context.Background(), l) },
		func() { srv.Close() }, echo.ErrServerClosed)
}

// BenchmarkRoundTrip times round trips of a 64-byte message through the
// WebSocket echo and through echo.Server's TCP echo, each on the engine
// named, alternately in the same loop, so that the machine's noise falls on both alike. It reports the
// time of each and their ratio.
func BenchmarkRoundTrip(b *testing.B) {
	msg := make([]byte, 64)
	for _, engine := range []string{echo.EngineGoroutine, echo.EngineEpoll} {
		b.Run("websocket-vs-tcp-"+engine, func(b *testing.B) {
			srv := serveOn(b, &Handler{}, engine).Server
			ws := dial(b, wsURL(srv, "/"))
			tcp, err := net.Dial("tcp", startEcho(b, engine))
			if err != nil {
				b.Fatal(err)
			}
			defer tcp.Close()
			ctx := context.Background()
			got := make([]byte, len(msg))
			var wsTime, tcpTime time.Duration
			n := 0
			for b.Loop() {
				start := time.Now()
				if err := ws.Write(ctx, websocket.MessageBinary, msg); err != nil {
					b.Fatal(err)
				}
				if _, _, err := ws.Read(ctx); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if _, err := tcp.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(tcp, got); err != nil {
					b.Fatal(err)
				}
				wsTime += mid.Sub(start)
				tcpTime += time.Since(mid)
				n++
			}
			b.ReportMetric(float64(wsTime.Nanoseconds())/float64(n), "ws-ns/rt")
			b.ReportMetric(float64(tcpTime.Nanoseconds())/float64(n), "tcp-ns/rt")
			b.ReportMetric(float64(wsTime)/float64(tcpTime), "ws/tcp")
		})
	}
}

// idleConns is how many idle connections the memory benchmark holds open.
const idleConns = 2000

// BenchmarkIdleConnection reports the memory (heap and goroutine stacks,
// server and client in one process) per idle connection. The clients are
// bare TCP connections, the WebSocket ones after a handshake written by
// hand, so that what differs is the server's share.
func BenchmarkIdleConnection(b *testing.B) {
	for _, engine := range []string{echo.EngineGoroutine, echo.EngineEpoll} {
		b.Run("websocket-"+engine, func(b *testing.B) {
			addr := serveOn(b, &Handler{}, engine).Listener.Addr().String()
			measureIdle(b, func() (net.Conn, error) { return handshake(addr) })
		})
		b.Run("tcp-"+engine, func(b *testing.B) {
			addr := startEcho(b, engine)
			measureIdle(b, func() (net.Conn, error) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					return nil, err
				}
				// A round trip: the server has taken the connection in.
				c.Write([]byte("x"))
				_, err = io.ReadFull(c, make([]byte, 1))
				return c, err
			})
		})
	}
}

func measureIdle(b *testing.B, open func() (net.Conn, error)) {
	before := inUse()
	conns := make([]net.Conn, 0, idleConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idleConns {
		c, err := open()
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	after := inUse()
	for b.Loop() {
		// The measurement is the connections above; the loop is only
		// there to satisfy the benchmark runner.
	}
	b.ReportMetric(float64(after-before)/idleConns, "B/conn")
}

// inUse returns the heap and stack memory in use, after a collection.
func inUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}

// handshake opens a WebSocket to addr by hand and returns the bare
// connection, with a round trip done.
func handshake(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", addr)
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode != http.StatusSwitchingProtocols {
		err = errors.New(resp.Status)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	// One masked binary frame of one byte (mask zero), and its echo.
	c.Write([]byte{0x82, 0x81, 0, 0, 0, 0, 'x'})
	_, err = io.ReadFull(br, make([]byte, 3))
	c.SetDeadline(time.Time{})
	return c, err
}
