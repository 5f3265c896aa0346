package echo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/echod/echod/internal/proxied"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// adoptFrom accepts connections on a loopback listener, reads the first
// header bytes of each on the accepting goroutine, as a PROXY listener
// would, and hands the connection to srv with what it read past them.
// Each Adopt's result is sent on adopted, which holds 16.
func adoptFrom(t *testing.T, srv *Server, header int, proc func() Processor) (addr string, adopted <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	results := make(chan error, 16)
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 256)
			n, err := io.ReadAtLeast(c, buf, header)
			if err != nil {
				c.Close()
				continue
			}
			h := Handoff{Conn: c, Buffered: buf[header:n],
				Remote: netip.MustParseAddrPort("192.0.2.1:40000")}
			if proc != nil {
				h.Processor = proc()
			}
			select {
			case results <- srv.Adopt(h):
			default:
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		srv.Close()
	})
	return l.Addr().String(), results
}

func TestAdoptServesBufferedBytesFirst(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine}
		addr, _ := adoptFrom(t, srv, 4, nil)
		c := dial(t, addr)
		// The header and the first bytes arrive in one write, so the
		// adopting goroutine reads past the header.
		if _, err := c.Write([]byte("HDR:first ")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("first "))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "first " {
			t.Fatalf("echo of the buffered bytes = %q, %v", got, err)
		}
		roundTrip(t, c, bytes.Repeat([]byte("then more "), 5000))
		waitFor(t, "the adopted connection to count", func() bool { return srv.Stats().Conns == 1 })
		c.CloseWrite()
		if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
			t.Fatalf("after half-close: %d bytes, %v; want EOF", n, err)
		}
		waitFor(t, "the connection to end", func() bool { return srv.Stats().Conns == 0 })
	})
}

// upper is a Processor that writes back its input in upper case and ends
// the connection after a '.'; Stop says "BYE:" and why.
type upper struct{}

func (upper) Process(out, in []byte) ([]byte, bool) {
	for _, b := range in {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		out = append(out, b)
		if b == '.' {
			return out, true
		}
	}
	return out, false
}

func (upper) Stop(out []byte, why Reason) []byte { return append(out, "BYE:"+why.String()...) }

func TestAdoptRunsTheProcessor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine}
		addr, _ := adoptFrom(t, srv, 4, func() Processor { return upper{} })
		c := dial(t, addr)
		if _, err := c.Write([]byte("HDR:hello ")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len("HELLO "))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "HELLO " {
			t.Fatalf("processed buffered bytes = %q, %v", got, err)
		}
		if _, err := c.Write([]byte("world.")); err != nil {
			t.Fatal(err)
		}
		// The processor ends the session: its output, then EOF.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(c)
		if string(rest) != "WORLD." || err != nil {
			t.Fatalf("after the end = %q, %v; want %q then EOF", rest, err, "WORLD.")
		}
	})
}

func TestAdoptRefusesOverALimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, MaxConnsPerIP: 1}
		addr, adopted := adoptFrom(t, srv, 4, nil)
		// Both come from the one address the handoff names.
		first := dial(t, addr)
		first.Write([]byte("HDR:"))
		if err := <-adopted; err != nil {
			t.Fatalf("Adopt of the first = %v", err)
		}
		roundTrip(t, first, []byte("served"))
		second := dial(t, addr)
		second.Write([]byte("HDR:"))
		if err := <-adopted; !errors.Is(err, ErrRefused) {
			t.Fatalf("Adopt over MaxConnsPerIP = %v, want ErrRefused", err)
		}
		if _, err := second.Read(make([]byte, 1)); err == nil {
			t.Fatal("the refused connection is still open")
		}
		if n := srv.Stats().Limited[ReasonMaxConnsPerIP]; n != 1 {
			t.Fatalf("Limited[max-conns-per-ip] = %d, want 1", n)
		}
		roundTrip(t, first, []byte("still served"))
	})
}

func TestAdoptStopsTheProcessorAtALimit(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, IdleTimeout: 200 * time.Millisecond}
		addr, _ := adoptFrom(t, srv, 4, func() Processor { return upper{} })
		c := dial(t, addr)
		if _, err := c.Write([]byte("HDR:hi")); err != nil {
			t.Fatal(err)
		}
		// The goodbye, then EOF: the client's close ends it.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(c)
		if string(rest) != "HIBYE:idle-timeout" || err != nil {
			t.Fatalf("idle session read %q, %v; want %q then EOF", rest, err, "HIBYE:idle-timeout")
		}
		c.Close()
		waitFor(t, "the idle end to count", func() bool {
			return srv.Stats().Limited[ReasonIdleTimeout] == 1 && srv.Stats().Conns == 0
		})
	})
}

func TestShutdownSaysGoodbyeThroughTheProcessor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine}
		addr, _ := adoptFrom(t, srv, 4, func() Processor { return upper{} })
		c := dial(t, addr)
		if _, err := c.Write([]byte("HDR:hi")); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, 2)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "HI" {
			t.Fatalf("read %q, %v", got, err)
		}
		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shutdown <- srv.Shutdown(ctx)
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		rest, err := io.ReadAll(c)
		if string(rest) != "BYE:closed by server" || err != nil {
			t.Fatalf("during the drain read %q, %v; want %q then EOF", rest, err, "BYE:closed by server")
		}
		c.Close()
		if err := <-shutdown; err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	})
}

// TestProxyConnectionsIdleWithoutAGoroutine serves PROXY protocol
// connections whose header arrives with their first bytes: the event loops
// serve them after the header, with no goroutine left for any of them.
func TestProxyConnectionsIdleWithoutAGoroutine(t *testing.T) {
	if !eventLoopSupported {
		t.Skip("no event loop here")
	}
	const n = 50
	srv := &Server{Engine: EngineEpoll}
	l := proxied.NewListener(loopbackListener(t), proxied.Config{})
	serveOn(t, srv, l)
	var before int
	for i := range n + 1 {
		if i == 1 {
			// The first started the loops and whatever else runs.
			before = runtime.NumGoroutine()
		}
		c := dial(t, l.Addr().String())
		msg := fmt.Sprintf("echo %d", i)
		if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.1 127.0.0.1 40000 7007\r\n"+msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo after the header = %q, %v; want %q", got, err, msg)
		}
	}
	waitFor(t, "the connections to be served", func() bool { return srv.Stats().Conns == n+1 })
	if after := runtime.NumGoroutine(); after-before >= n {
		t.Fatalf("%d goroutines for %d idle PROXY connections, %d before them", after, n, before)
	}
}

// pinger echoes, and says input of "ping"s only was a keep-alive.
type pinger struct{ quiet bool }

func (p *pinger) Process(out, in []byte) ([]byte, bool) {
	p.quiet = len(in) > 0 && len(bytes.ReplaceAll(in, []byte("ping"), nil)) == 0
	return append(out, in...), false
}

func (*pinger) Stop(out []byte, _ Reason) []byte { return out }
func (p *pinger) Quiet() bool                    { return p.quiet }

func TestAProcessorsKeepAlivesAreNoProgress(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, IdleTimeout: 400 * time.Millisecond}
		addr, _ := adoptFrom(t, srv, 4, func() Processor { return &pinger{} })
		c := dial(t, addr)
		c.Write([]byte("HDR:real data"))
		if _, err := io.ReadFull(c, make([]byte, len("real data"))); err != nil {
			t.Fatal(err)
		}
		// Pings every 50 ms, echoed, yet idle: the timeout ends it.
		start := time.Now()
		for time.Since(start) < 5*time.Second {
			if _, err := c.Write([]byte("ping")); err != nil {
				break
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond) // the client's pace, not synchronisation
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("pings kept the session echoing for %v", d)
		}
		c.Close()
		waitFor(t, "the idle end to count", func() bool { return srv.Stats().Limited[ReasonIdleTimeout] == 1 })
	})
}

func TestAdoptWithoutAConnectionIsAnError(t *testing.T) {
	srv := &Server{}
	defer srv.Close()
	if err := srv.Adopt(Handoff{}); err == nil || !strings.Contains(err.Error(), "no connection") {
		t.Fatalf("Adopt(Handoff{}) = %v, want an error naming the missing connection", err)
	}
}

func TestAProcessorSaysGoodbyeAtTheByteCap(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, MaxSessionBytes: 5}
		addr, _ := adoptFrom(t, srv, 4, func() Processor { return upper{} })
		c := dial(t, addr)
		if _, err := c.Write([]byte("HDR:hello world")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if string(got) != "HELLOBYE:max-session-bytes" || err != nil {
			t.Fatalf("read %q, %v; want the first 5 bytes processed, the goodbye, then EOF", got, err)
		}
		c.Close()
		waitFor(t, "the cap to count", func() bool { return srv.Stats().Limited[ReasonMaxSessionBytes] == 1 })
	})
}

// endCounter is upper that counts the ends it hears of.
type endCounter struct {
	upper
	ended *atomic.Int32
}

func (e endCounter) Ended() { e.ended.Add(1) }

// Stop is told which limit or drain ends the session, and Ended that the
// connection has closed, once, on both engines.
func TestAProcessorIsToldWhyAndWhenItEnds(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, tc := range []struct {
			name string
			srv  *Server
			end  func(*Server)
			want string
		}{
			{"idle", &Server{Engine: engine, IdleTimeout: 200 * time.Millisecond}, nil, "BYE:idle-timeout"},
			{"duration", &Server{Engine: engine, MaxSessionDuration: 200 * time.Millisecond}, nil, "BYE:max-session-duration"},
			{"drain", &Server{Engine: engine}, func(s *Server) { go s.Shutdown(context.Background()) }, "BYE:closed by server"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var ended atomic.Int32
				addr, _ := adoptFrom(t, tc.srv, 4, func() Processor { return endCounter{ended: &ended} })
				c := dial(t, addr)
				c.Write([]byte("HDR:hi "))
				if _, err := io.ReadFull(c, make([]byte, 3)); err != nil {
					t.Fatal(err)
				}
				if tc.end != nil {
					tc.end(tc.srv)
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(c)
				if string(got) != tc.want || err != nil {
					t.Fatalf("read %q, %v; want %q then EOF", got, err, tc.want)
				}
				c.Close()
				waitFor(t, "Ended to be called", func() bool { return ended.Load() == 1 })
			})
		}
	})
}

// sentence writes back its input in upper case and is busy until a '.':
// a goodbye waits for the sentence to end.
type sentence struct{ open *atomic.Bool }

func (s sentence) Process(out, in []byte) ([]byte, bool) {
	out, _ = upper{}.Process(out, in)
	if len(in) > 0 {
		s.open.Store(in[len(in)-1] != '.')
	}
	return out, false
}

func (sentence) Stop(out []byte, why Reason) []byte { return upper{}.Stop(out, why) }
func (s sentence) Busy() bool                       { return s.open.Load() }

// A goodbye the server decides waits for the sentence in progress, past
// the byte cap too, but not for the idle timeout: a stalled sentence is
// idle.
func TestAGoodbyeWaitsForABusyProcessor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, tc := range []struct {
			name string
			srv  *Server
			end  func(*Server)
			more string // sent once the first part has come back
			want string
		}{
			{"drain", &Server{Engine: engine}, func(s *Server) { go s.Shutdown(context.Background()) },
				" world.", " WORLD.BYE:closed by server"},
			{"byte cap", &Server{Engine: engine, MaxSessionBytes: 8}, nil,
				" world.", " WORLD.BYE:max-session-bytes"},
			{"idle", &Server{Engine: engine, IdleTimeout: 200 * time.Millisecond}, nil,
				"", "BYE:idle-timeout"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				addr, _ := adoptFrom(t, tc.srv, 4, func() Processor { return sentence{open: new(atomic.Bool)} })
				c := dial(t, addr)
				c.Write([]byte("HDR:hello"))
				if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
					t.Fatal(err)
				}
				if tc.end != nil {
					tc.end(tc.srv)
				}
				if tc.more != "" {
					// The end has had its chance to cut in: nothing
					// may come before the sentence ends.
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					if n, _ := c.Read(make([]byte, 64)); n > 0 {
						t.Fatalf("%d bytes came back before the sentence ended", n)
					}
					c.Write([]byte(tc.more))
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				got, err := io.ReadAll(c)
				if string(got) != tc.want || err != nil {
					t.Fatalf("read %q, %v; want %q then EOF", got, err, tc.want)
				}
			})
		}
	})
}
