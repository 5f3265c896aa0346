package echo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testEngines lists the engines every test of the server runs against.
func testEngines() []string {
	if eventLoopSupported {
		return []string{EngineGoroutine, EngineEpoll}
	}
	return []string{EngineGoroutine}
}

// forEachEngine runs test as a subtest for each engine.
func forEachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, engine := range testEngines() {
		t.Run(engine, func(t *testing.T) { test(t, engine) })
	}
}

// startServer serves echo with engine on a fresh loopback port until the
// test ends.
func startServer(t *testing.T, engine string) (*Server, string) {
	t.Helper()
	srv := &Server{Engine: engine}
	return srv, serveTCP(t, srv)
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	return testkit.Dial(t, addr)
}

func TestShutdownWaitsForOpenSessions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv, addr := startServer(t, engine)
		c := dial(t, addr)
		roundTrip(t, c, []byte("before shutdown"))

		shutdown := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shutdown <- srv.Shutdown(ctx)
		}()

		// New connections are refused as soon as the listener closes.
		waitFor(t, "listener to close", func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err != nil
		})

		// The open session keeps echoing while the server drains...
		roundTrip(t, c, []byte("during shutdown"))
		select {
		case err := <-shutdown:
			t.Fatalf("Shutdown returned %v while a session was open", err)
		default:
		}

		// ...and Shutdown returns once the client has finished.
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Fatalf("after half-close: read %q, %v; want EOF", rest, err)
		}
		if err := <-shutdown; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

func TestShutdownTimeoutClosesRemainingSessions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv, addr := startServer(t, engine)
		c := dial(t, addr)
		roundTrip(t, c, []byte("idle after this"))

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
		}
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes from a connection Shutdown should have closed", n)
		}
	})
}

func TestCancellingServeStopsOnlyItsAccepting(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv, other := startServer(t, engine)
		done := make(chan error, 1)
		go func() { done <- srv.Serve(ctx, l) }()

		c := dial(t, l.Addr().String())
		roundTrip(t, c, []byte("hello"))
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve = %v, want context.Canceled", err)
		}
		// The listener is closed, but the session it accepted goes on, and
		// so does the server's other listener.
		if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Fatal("dialled a listener whose Serve was cancelled")
		}
		roundTrip(t, c, []byte("still echoing"))
		roundTrip(t, dial(t, other), []byte("other listener"))

		// Close ends it.
		srv.Close()
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("read %d bytes after Close", n)
		}
	})
}

func TestServeAfterCloseReturnsErrServerClosed(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine}
		srv.Close()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Serve(context.Background(), l); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v, want ErrServerClosed", err)
		}
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("listener still open after Serve returned: %v", err)
		}
	})
}

// flakyListener fails its first accepts with errs, then accepts for real.
type flakyListener struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	return l.Listener.Accept()
}

func TestAcceptRetriesTemporaryErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := &flakyListener{Listener: inner, errs: []error{
			&net.OpError{Op: "accept", Err: syscall.EMFILE},
			&net.OpError{Op: "accept", Err: syscall.ENFILE},
			&net.OpError{Op: "accept", Err: syscall.ECONNABORTED},
		}}
		srv := &Server{Engine: engine}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(context.Background(), l) }()
		defer func() {
			srv.Close()
			<-done
		}()

		c := dial(t, inner.Addr().String())
		roundTrip(t, c, []byte("served after three failed accepts"))
	})
}

func TestAcceptStopsOnPermanentError(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l := &flakyListener{Listener: inner, errs: []error{errors.New("listener broke")}}
		err = (&Server{Engine: engine}).Serve(context.Background(), l)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte("listener broke")) {
			t.Fatalf("Serve = %v, want the listener's error", err)
		}
	})
}

// roundTrip sends msg on c and reads back exactly len(msg) bytes.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read echo of %d bytes: %v", len(msg), err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// waitFor polls cond until it holds or 10 seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, what, cond)
}

// pipeListener is a net.Listener whose connections are in-memory pipes
// (net.Pipe): a write blocks until the other end reads, so a slow reader is
// exactly as slow as the test makes it. Being no *net.TCPListener, it is
// served on goroutines whatever the engine.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

// dial returns the client end of a new connection to l.
func (l *pipeListener) dial(t *testing.T) net.Conn {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close() })
	select {
	case l.conns <- server:
	case <-time.After(10 * time.Second):
		t.Fatal("the server accepted no connection")
	}
	return client
}

// servePipes serves srv on a pipeListener until the test ends.
func servePipes(t *testing.T, srv *Server) *pipeListener {
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	serveOn(t, srv, l)
	return l
}

// serveOn serves srv on l until the test ends.
func serveOn(t *testing.T, srv *Server, l net.Listener) {
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

// uncomparable makes a listener or socket a type no map may be keyed by:
// the server must track them some other way.
type (
	uncomparableListener struct {
		net.Listener
		_ []int
	}
	uncomparablePacketConn struct {
		net.PacketConn
		_ []int
	}
)

func TestServesUncomparableListenersAndSockets(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{}
	serveOn(t, srv, uncomparableListener{Listener: l})
	udpDone := make(chan error, 1)
	go func() { udpDone <- srv.ServeUDP(context.Background(), uncomparablePacketConn{PacketConn: pc}) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-udpDone; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeUDP returned %v, want ErrServerClosed", err)
		}
	})
	roundTrip(t, dial(t, l.Addr().String()), []byte("over TCP"))
	c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
	if err := udpRoundTrip(c, pc.LocalAddr().(*net.UDPAddr).AddrPort(), []byte("over UDP")); err != nil {
		t.Fatal(err)
	}
}
