package testkit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartServesUntilTheTestEnds(t *testing.T) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	var l net.Listener
	// Cleanups run last first: this one after Start's.
	t.Cleanup(func() {
		if !stopped {
			t.Error("stop was not called")
		}
	})
	addr := Start(t, func(ln net.Listener) error {
		mu.Lock()
		l = ln
		mu.Unlock()
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
			})
		}
	}, func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		l.Close()
		wg.Wait()
	}, net.ErrClosed)
	c := Dial(t, addr)
	fmt.Fprint(c, "ping")
	c.CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "ping" || err != nil {
		t.Fatalf("read %q, %v; want the echo of ping", got, err)
	}
}

func TestBufferTakesConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Fatalf("buffer holds %d bytes, want 800", len(got))
	}
}

func TestWaitForPollsUntilTheConditionHolds(t *testing.T) {
	n := 0
	WaitFor(t, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("WaitFor returned after %d polls, want 3", n)
	}
}

func TestEventuallyGivesUpAtItsDeadline(t *testing.T) {
	if Eventually(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("Eventually reported a condition that never holds as held")
	}
}

func TestServeHandlesEachConnectionAndClosesThemAtTheEnd(t *testing.T) {
	var held net.Conn
	t.Run("server", func(t *testing.T) {
		addr := Serve(t, Listen(t), func(c net.Conn) { io.Copy(c, c) })
		for _, msg := range []string{"one", "two"} {
			c := Dial(t, addr)
			fmt.Fprint(c, msg)
			c.CloseWrite()
			if got, err := io.ReadAll(c); string(got) != msg || err != nil {
				t.Fatalf("read %q, %v; want the echo of %s", got, err, msg)
			}
		}
		var err error
		held, err = net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(held, "x")
		if _, err := io.ReadFull(held, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	})
	defer held.Close()
	held.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := held.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d, %v from a connection open when its test ended; want it closed", n, err)
	}
}

func TestServeUDPAnswersWithWhatReplyReturns(t *testing.T) {
	addr := ServeUDP(t, "127.0.0.1:0", 4, func(p []byte) [][]byte {
		return [][]byte{p, []byte(strings.ToUpper(string(p)))}
	})
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "hello")
	buf := make([]byte, 16)
	for _, want := range []string{"hell", "HELL"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("read %q, %v; want %q (the datagram cut to the 4-byte buffer)", buf[:n], err, want)
		}
	}
}

func TestListenUDPOpensASocketOnTheAddress(t *testing.T) {
	c := ListenUDP(t, "127.0.0.1:0")
	if a := c.LocalAddr().(*net.UDPAddr); !a.IP.Equal(net.IPv4(127, 0, 0, 1)) || a.Port == 0 {
		t.Fatalf("listening on %v, want a port on 127.0.0.1", a)
	}
}

func TestListeningReadsTheReadinessLines(t *testing.T) {
	log := `time=2026-12-01T18:00:00Z level=INFO msg=listening proto=tcp addr=127.0.0.1:7007
time=2026-12-01T18:00:00Z level=INFO msg="not ready" proto=udp addr=127.0.0.1:9
time=2026-12-01T18:00:00Z level=INFO msg=listening proto=udp addr=127.0.0.1:7007
time=2026-12-01T18:00:00Z level=INFO msg=listening proto=tcp addr=[::1]:7007
`
	addrs, n := Listening(log)
	if n != 3 || fmt.Sprint(addrs) != "map[tcp:[127.0.0.1:7007 [::1]:7007] udp:[127.0.0.1:7007]]" {
		t.Fatalf("Listening = %v, %d; want two TCP and one UDP address", addrs, n)
	}
}

func TestDialFromConnectsFromTheSourceAddress(t *testing.T) {
	l := Listen(t)
	c := DialFrom(t, "127.0.0.2", l.Addr().String())
	peer, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if got := peer.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" || c.LocalAddr().String() != peer.RemoteAddr().String() {
		t.Fatalf("the server sees the client at %v, want 127.0.0.2", peer.RemoteAddr())
	}
}

func TestFreeAddrIsClosed(t *testing.T) {
	if c, err := net.Dial("tcp", FreeAddr(t, "tcp")); err == nil {
		c.Close()
		t.Fatal("a connection to a free TCP address succeeded")
	}
	c, err := net.Dial("udp", FreeAddr(t, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("x"))
	// Loopback answers a datagram to a closed port with ICMP, which the
	// next read on a connected socket reports.
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("read after a datagram to a free UDP address: %v, want connection refused", err)
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, r.URL.Path)
	}))
	defer srv.Close()
	if code, body := Get(t, srv.URL+"/pot"); code != http.StatusTeapot || body != "/pot" {
		t.Fatalf("Get = %d %q, want 418 and the path", code, body)
	}
}
