package echo

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

func TestReserveHoldsPlacesUnderMaxConns(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, MaxConns: 2}
		addr := serveTCP(t, srv)
		release1, ok := srv.Reserve(netip.MustParseAddr("192.0.2.1"))
		if !ok {
			t.Fatal("first Reserve refused under MaxConns 2")
		}
		// A peer that is not IP counts under MaxConns too.
		release2, ok := srv.Reserve(netip.Addr{})
		if !ok {
			t.Fatal("second Reserve refused under MaxConns 2")
		}
		if _, ok := srv.Reserve(netip.MustParseAddr("192.0.2.2")); ok {
			t.Fatal("third Reserve accepted under MaxConns 2")
		}
		// The reserved places are taken for the server's own clients too.
		expectRefused(t, "127.0.0.1", addr)
		if got := srv.Stats().Limited[ReasonMaxConns]; got != 2 {
			t.Errorf("Limited[max-conns] = %d, want 2 (one Reserve, one connection)", got)
		}

		// Releasing twice gives back one place, not two.
		release1()
		release1()
		c := dial(t, addr)
		roundTrip(t, c, []byte("in the released place"))
		if _, ok := srv.Reserve(netip.MustParseAddr("192.0.2.3")); ok {
			t.Fatal("Reserve accepted with one place reserved and one connection open")
		}
		release2()
		release3, ok := srv.Reserve(netip.MustParseAddr("192.0.2.3"))
		if !ok {
			t.Fatal("Reserve refused after a release")
		}
		release3()
		if st := srv.Stats(); st.Conns != 1 || st.Accepted != 1 {
			t.Errorf("Stats = %+v; want reserved places left out of Conns and Accepted", st)
		}
	})
}

func TestReserveHoldsPlacesUnderMaxConnsPerIP(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := &Server{Engine: engine, MaxConnsPerIP: 1}
		addr := serveTCP(t, srv)

		release, ok := srv.Reserve(netip.MustParseAddr("127.0.0.1"))
		if !ok {
			t.Fatal("Reserve refused for a source with nothing open")
		}
		expectRefused(t, "127.0.0.1", addr)
		roundTrip(t, dialFrom(t, "127.0.0.2", addr), []byte("another source"))
		if _, ok := srv.Reserve(netip.MustParseAddr("127.0.0.2")); ok {
			t.Fatal("Reserve accepted for a source with a connection open")
		}

		// IPv6 sources are counted by /64, and an IPv4-mapped address as
		// the IPv4 address it maps.
		release6, ok := srv.Reserve(netip.MustParseAddr("2001:db8::1"))
		if !ok {
			t.Fatal("Reserve refused for a fresh /64")
		}
		if _, ok := srv.Reserve(netip.MustParseAddr("2001:db8::ffff:2")); ok {
			t.Fatal("Reserve accepted for a second address in the same /64")
		}
		if _, ok := srv.Reserve(netip.MustParseAddr("::ffff:127.0.0.1")); ok {
			t.Fatal("Reserve accepted an IPv4-mapped 127.0.0.1 while 127.0.0.1 is reserved")
		}
		release6b, ok := srv.Reserve(netip.MustParseAddr("2001:db8:0:1::1"))
		if !ok {
			t.Fatal("Reserve refused for the next /64")
		}
		release6()
		release6b()
		// Peers that are not IP have no source to count by.
		for range 3 {
			if _, ok := srv.Reserve(netip.Addr{}); !ok {
				t.Fatal("Reserve refused an invalid address under MaxConnsPerIP alone")
			}
		}

		if got := srv.Stats().Limited[ReasonMaxConnsPerIP]; got != 4 {
			t.Errorf("Limited[max-conns-per-ip] = %d, want 4 (one connection, three Reserves)", got)
		}
		release()
		roundTrip(t, dialFrom(t, "127.0.0.1", addr), []byte("place given back"))
	})
}

func TestReserveRefusesWhenClosing(t *testing.T) {
	srv := &Server{MaxConns: 1}
	release, ok := srv.Reserve(netip.MustParseAddr("192.0.2.1"))
	if !ok {
		t.Fatal("Reserve refused on a fresh server")
	}
	release()
	srv.Close()
	release, ok = srv.Reserve(netip.MustParseAddr("192.0.2.1"))
	if ok {
		t.Fatal("Reserve accepted after Close")
	}
	release() // harmless
	for r, n := range srv.Stats().Limited {
		if n != 0 {
			t.Errorf("Limited[%v] = %d after a refusal for closing; want it counted under no limit", r, n)
		}
	}
}

// reservingListener holds a place with Reserve, as a wrapper does for a
// connection it has not handed to Serve yet (internal/proxied, while the
// PROXY header is read), and gives it back when it is closed, before Close
// returns: Close waits for the goroutines that hold places to let go.
type reservingListener struct {
	net.Listener
	release   func()
	accepting chan struct{} // closed by the first Accept
	once      sync.Once
}

func (l *reservingListener) Accept() (net.Conn, error) {
	l.once.Do(func() { close(l.accepting) })
	return l.Listener.Accept()
}

func (l *reservingListener) Close() error {
	err := l.Listener.Close()
	l.release()
	return err
}

// Shutdown, Close, and a Serve that comes after them close a listener
// without holding the server's lock: the listener's Close may give back
// places it reserved, which takes that lock. Shutdown closing the PROXY
// listener during a silent flood deadlocked so (found by
// TestPROXYSilentFloodDoesNotStallOthers under go test -race -cpu 1).
func TestClosingAListenerMayReleaseReservedPlaces(t *testing.T) {
	for _, tt := range []struct {
		name string
		stop func(*Server) error
	}{
		{"Shutdown", func(s *Server) error { return s.Shutdown(context.Background()) }},
		{"Close", (*Server).Close},
		{"Serve after Close", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := &Server{}
			release, ok := srv.Reserve(netip.MustParseAddr("192.0.2.1"))
			if !ok {
				t.Fatal("Reserve refused on a fresh server")
			}
			l := &reservingListener{Listener: testkit.Listen(t), release: release, accepting: make(chan struct{})}
			served := make(chan error, 1)
			if tt.stop == nil {
				srv.Close()
				go func() { served <- srv.Serve(context.Background(), l) }()
			} else {
				go func() { served <- srv.Serve(context.Background(), l) }()
				<-l.accepting
				stopped := make(chan error, 1)
				go func() { stopped <- tt.stop(srv) }()
				select {
				case err := <-stopped:
					if err != nil {
						t.Fatalf("%s = %v", tt.name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s still waiting after 10s", tt.name)
				}
			}
			select {
			case err := <-served:
				if !errors.Is(err, ErrServerClosed) {
					t.Fatalf("Serve = %v, want ErrServerClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve still running 10s after the server was closed")
			}
		})
	}
}
