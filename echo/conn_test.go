package echo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// echoSession sends payload, half-closes and returns everything read until EOF.
func echoSession(t *testing.T, addr string, payload []byte) []byte {
	t.Helper()
	c := dial(t, addr)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	return got
}

func TestEchoesAllByteValuesExactly(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		payload := make([]byte, 256)
		for i := range payload {
			payload[i] = byte(i)
		}
		// An exact reply rules out the classic bugs: no leading zero bytes, no
		// padding to the buffer size, nothing dropped.
		if got := echoSession(t, addr, payload); !bytes.Equal(got, payload) {
			t.Fatalf("reply of %d bytes differs from the 256 sent: %v", len(got), pattern.FirstDiff(got, payload))
		}
	})
}

func TestEmptySessionGetsImmediateEOF(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		if got := echoSession(t, addr, nil); len(got) != 0 {
			t.Fatalf("empty session got %d bytes back", len(got))
		}
	})
}

func TestEchoesEachChunkBeforeHalfClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		c := dial(t, addr)
		// Each chunk must come back while the connection stays open both ways:
		// a server that buffers until EOF never answers the first one.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for i, size := range []int{1, 13, 1000, 4096, 4097, 65536} {
			chunk := make([]byte, size)
			pattern.NewStream(uint64(i + 1)).Read(chunk)
			roundTrip(t, c, chunk)
		}
	})
}

func TestLargeStreamEchoedExactly(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		const size = 64 << 20
		c := dial(t, addr)

		errc := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, io.LimitReader(pattern.NewStream(99), size))
			if err == nil {
				err = c.CloseWrite()
			}
			errc <- err
		}()
		v := pattern.NewVerifier(io.LimitReader(pattern.NewStream(99), size))
		if _, err := io.Copy(v, c); err != nil {
			t.Fatalf("echo of the 64 MiB stream: %v", err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write: %v", err)
		}
		if v.Verified() != size {
			t.Fatalf("got %d bytes back, want %d", v.Verified(), size)
		}
	})
}

func TestHalfCloseFlushesEverythingInFlight(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		// Megabytes are still travelling through the server when the client
		// half-closes; all of them must arrive before the EOF.
		payload := make([]byte, 8<<20)
		pattern.NewStream(5).Read(payload)
		got := echoSession(t, addr, payload)
		if len(got) != len(payload) {
			t.Fatalf("got %d of %d bytes before EOF", len(got), len(payload))
		}
		if i := pattern.FirstDiff(got, payload); i >= 0 {
			t.Fatalf("byte %d differs", i)
		}
	})
}

func TestThousandConcurrentClients(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		const clients = 1000
		conns := make([]*net.TCPConn, clients)
		// All connections are open at once before any of them finishes.
		for i := range conns {
			conns[i] = dial(t, addr)
		}
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for i, c := range conns {
			wg.Go(func() {
				msg := []byte(fmt.Sprintf("client %d says hello", i))
				if _, err := c.Write(msg); err != nil {
					errs <- err
					return
				}
				c.CloseWrite()
				got, err := io.ReadAll(c)
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("client %d got %q, want %q", i, got, msg)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

func TestClientResetDoesNotDisturbServer(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		c := dial(t, addr)
		go io.Copy(io.Discard, c)
		if _, err := c.Write(make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		// Linger 0 turns Close into a reset while the echo is mid-stream.
		c.SetLinger(0)
		c.Close()

		if got := echoSession(t, addr, []byte("still here")); string(got) != "still here" {
			t.Fatalf("after a reset, a new session got %q", got)
		}
	})
}

func TestClientThatNeverReadsMeetsBackpressure(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		c := dial(t, addr)
		// The client writes and never reads. Once the socket buffers on both
		// sides are full the server must stop reading, so the client's writes
		// stall; a server that buffered in memory would take all 256 MiB.
		c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		chunk := make([]byte, 1<<20)
		var written int
		for written < 256<<20 {
			n, err := c.Write(chunk)
			written += n
			if err != nil {
				break
			}
		}
		if written >= 64<<20 {
			t.Fatalf("the server accepted %d MiB from a client that never reads", written>>20)
		}
		t.Logf("writes stalled after %d MiB in flight", written>>20)
	})
}

// BenchmarkEchoRoundTrip measures one client's ping-pong through each
// engine. The allocations it reports are the whole process's per message
// (client and server): the hot path of each engine allocates nothing.
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, engine := range testEngines() {
		for _, size := range []int{64, 512, 16 << 10} {
			b.Run(fmt.Sprintf("%s/%dB", engine, size), func(b *testing.B) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				srv := &Server{Engine: engine}
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
				msg := make([]byte, size)
				got := make([]byte, size)
				b.SetBytes(int64(size))
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

// BenchmarkSessionCycle measures a whole short session: connect, one byte
// each way, half-close, close. Its allocations are the per-connection cost
// of admission, tracking and the end's accounting.
func BenchmarkSessionCycle(b *testing.B) {
	for _, engine := range testEngines() {
		b.Run(engine, func(b *testing.B) {
			srv := &Server{Engine: engine}
			addr := serveTCP(b, srv)
			buf := make([]byte, 1)
			b.ReportAllocs()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Write(buf)
				io.ReadFull(c, buf)
				c.(*net.TCPConn).CloseWrite()
				io.ReadAll(c)
				c.Close()
			}
		})
	}
}
