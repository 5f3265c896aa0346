//go:build linux

package epoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/echod/echod/echo/internal/session"
	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// engine is an Engine under test with what it reported.
type engine struct {
	*Engine
	ended   chan Ended
	in, out atomic.Uint64
}

// start starts an engine with cfg (its counters replaced) and stops it
// when the test ends; the ends it hands over arrive on e.ended.
func start(t *testing.T, cfg Config) *engine {
	t.Helper()
	e := &engine{ended: make(chan Ended, 16)}
	cfg.Loops = 2
	cfg.BytesIn, cfg.BytesOut = &e.in, &e.out
	cfg.Closed = func(Ended) bool { return true }
	var err error
	if e.Engine, err = Start(cfg); err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var batch []Ended
		for stopped := false; !stopped; {
			select {
			case <-e.Ended():
			case <-stop:
				stopped = true
			}
			batch = e.TakeEnded(batch[:0])
			for _, end := range batch {
				e.ended <- end
			}
		}
	}()
	t.Cleanup(func() {
		e.Stop()
		close(stop)
		<-done
	})
	return e
}

// listen makes the engine accept on a fresh loopback port, and returns the
// port's address.
func (e *engine) listen(t *testing.T) (*Listener, string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 128); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	ln, err := e.Listen(fd, func(err error, _ time.Duration) bool {
		t.Errorf("accept failed: %v", err)
		return false
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		<-ln.Done()
	})
	return ln, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String()
}

// next returns the next connection end the engine reports.
func (e *engine) next(t *testing.T) Ended {
	t.Helper()
	select {
	case end := <-e.ended:
		return end
	case <-time.After(10 * time.Second):
		t.Fatal("no connection ended")
		return Ended{}
	}
}

func TestEchoesUntilHalfClose(t *testing.T) {
	e := start(t, Config{})
	_, addr := e.listen(t)
	c := testkit.Dial(t, addr)
	msg := make([]byte, 4<<20) // past bulkSize: spliced, with tails
	pattern.NewStream(1).Read(msg)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg[:100])
		if err == nil {
			_, err = c.Write(msg[100:])
		}
		c.CloseWrite()
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, %v; want the %d sent back exactly", len(got), err, len(msg))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	end := e.next(t)
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	if end.End != session.EOF || end.In != int64(len(msg)) || end.Out != int64(len(msg)) || end.Remote != local {
		t.Errorf("ended %+v; want EOF after %d bytes each way from %v", end, len(msg), local)
	}
	if e.in.Load() != uint64(len(msg)) || e.out.Load() != uint64(len(msg)) {
		t.Errorf("counted %d in, %d out; want %d each", e.in.Load(), e.out.Load(), len(msg))
	}
}

func TestClientReset(t *testing.T) {
	e := start(t, Config{})
	_, addr := e.listen(t)
	c := testkit.Dial(t, addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	c.SetLinger(0)
	c.Close()
	if end := e.next(t); end.End != session.Reset {
		t.Errorf("ended %+v, want Reset", end)
	}
}

func TestAdmitRefusesWithAReset(t *testing.T) {
	var asked atomic.Int32
	e := start(t, Config{Admit: func(netip.AddrPort) bool { asked.Add(1); return false }})
	_, addr := e.listen(t)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, unix.ECONNRESET) {
		t.Errorf("a refused connection: %v, want a reset", err)
	}
	if asked.Load() != 1 {
		t.Errorf("Admit asked %d times, want 1", asked.Load())
	}
	select {
	case end := <-e.ended:
		t.Errorf("a refused connection was reported: %+v", end)
	default:
	}
}

func TestLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want session.End
	}{
		{"idle", Config{Policy: session.New(session.Limits{Idle: 200 * time.Millisecond})}, session.IdleTimeout},
		{"duration", Config{Policy: session.New(session.Limits{Duration: 200 * time.Millisecond, Idle: time.Minute})}, session.MaxDuration},
		{"bytes", Config{Policy: session.New(session.Limits{Bytes: 3})}, session.MaxBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, tc.cfg)
			_, addr := e.listen(t)
			c := testkit.Dial(t, addr)
			c.Write([]byte("abcdef"))
			got, _ := io.ReadAll(c)
			if tc.want == session.MaxBytes {
				// Exactly the allowance, then EOF; the engine closes
				// once the client does.
				if string(got) != "abc" {
					t.Errorf("read %q back, want %q", got, "abc")
				}
				c.Close()
			}
			if end := e.next(t); end.End != tc.want {
				t.Errorf("ended %+v, want %v", end, tc.want)
			}
		})
	}
}

func TestCloseAllClosesPresentAndFutureConnections(t *testing.T) {
	e := start(t, Config{})
	_, addr := e.listen(t)
	c := testkit.Dial(t, addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	e.CloseAll()
	if end := e.next(t); end.End != session.Closed {
		t.Errorf("ended %+v, want Closed", end)
	}
	// Accepted, then closed at once.
	testkit.Dial(t, addr)
	if end := e.next(t); end.End != session.Closed {
		t.Errorf("a connection after CloseAll ended %+v, want Closed", end)
	}
}

func TestListenerCloseStopsAccepting(t *testing.T) {
	e := start(t, Config{})
	ln, addr := e.listen(t)
	ln.Close()
	select {
	case <-ln.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the loops never let go of the listener")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("dialled a closed listener")
	}
}

func TestStopEndsEverything(t *testing.T) {
	e := start(t, Config{})
	ln, addr := e.listen(t)
	c := testkit.Dial(t, addr)
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1)) // served: accepted, not just queued
	e.Stop()
	if end := e.next(t); end.End != session.Closed {
		t.Errorf("ended %+v, want Closed", end)
	}
	<-ln.Done()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Listen(fd, nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Listen after Stop = %v, want ErrStopped", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("Listen after Stop left its socket open (%v)", err)
	}
}

func TestAnIdleConnectionIs112Bytes(t *testing.T) {
	// Its allocation class: at 113 bytes, it would take 128.
	if n := unsafe.Sizeof(conn{}); n > 112 {
		t.Errorf("conn is %d bytes, more than 112", n)
	}
	for _, s := range []string{"192.0.2.1:40000", "[2001:db8::1]:7", "[::ffff:192.0.2.1]:1"} {
		ap := netip.MustParseAddrPort(s)
		want := netip.AddrPortFrom(ap.Addr().WithZone(""), ap.Port())
		if ap.Addr().Is4In6() {
			want = netip.AddrPortFrom(ap.Addr(), ap.Port()) // kept as given
		}
		if got := packAddr(ap).addrPort(); got != want {
			t.Errorf("packAddr(%v).addrPort() = %v", ap, got)
		}
	}
}

func TestTailPoolReusesBySize(t *testing.T) {
	var p tailPool
	for _, n := range []int{1, tailSmall, tailSmall + 1, tailMedium + 1, readSize} {
		b := p.get(n)
		if len(b) != n || cap(b) < n {
			t.Fatalf("get(%d) = len %d cap %d", n, len(b), cap(b))
		}
		p.put(b)
		if again := p.get(n); &again[:1][0] != &b[:1][0] {
			t.Errorf("get(%d) after put did not reuse the buffer", n)
		}
	}
}
