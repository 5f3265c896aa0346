package proxied

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
	"github.com/pires/go-proxyproto"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listen starts a Listener on a loopback port and returns it with its log.
func listen(t *testing.T, cfg Config) (*Listener, *testkit.Buffer) {
	t.Helper()
	inner := testkit.Listen(t)
	log := new(testkit.Buffer)
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	l := NewListener(inner, cfg)
	t.Cleanup(func() { l.Close() })
	return l, log
}

// dialAndSend connects to l and writes data, and returns the connection.
func dialAndSend(t *testing.T, l net.Listener, data []byte) net.Conn {
	t.Helper()
	c := testkit.Dial(t, l.Addr().String())
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	return c
}

// acceptOne accepts a connection within a few seconds, or reports none.
func acceptOne(t *testing.T, l *Listener, within time.Duration) net.Conn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		got <- c
	}()
	select {
	case c := <-got:
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
		return c
	case <-time.After(within):
		// Closing the listener ends the Accept above.
		l.Close()
		<-got
		return nil
	}
}

// waitStats waits until l's counts are want.
func waitStats(t *testing.T, l *Listener, want Stats) {
	t.Helper()
	if !testkit.Eventually(5*time.Second, func() bool { return l.Stats() == want }) {
		t.Fatalf("Stats = %+v, want %+v", l.Stats(), want)
	}
}

func header(t *testing.T, version byte, src string) []byte {
	t.Helper()
	ap := netip.MustParseAddrPort(src)
	h := &proxyproto.Header{
		Version:           version,
		Command:           proxyproto.PROXY,
		TransportProtocol: proxyproto.TCPv4,
		SourceAddr:        net.TCPAddrFromAddrPort(ap),
		DestinationAddr:   &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7},
	}
	if ap.Addr().Is6() {
		h.TransportProtocol = proxyproto.TCPv6
		h.DestinationAddr = &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 7}
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestValidHeadersGiveTheClientAddress(t *testing.T) {
	tests := []struct {
		name    string
		version byte
		src     string
	}{
		{"v1 IPv4", 1, "203.0.113.7:40000"},
		{"v2 IPv4", 2, "203.0.113.8:40001"},
		{"v1 IPv6", 1, "[2001:db8::7]:40002"},
		{"v2 IPv6", 2, "[2001:db8::8]:40003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := listen(t, Config{})
			// The first data shares a segment with the header: not a byte
			// of it may be lost or taken for the header.
			dialAndSend(t, l, append(header(t, tt.version, tt.src), "hello"...))
			c := acceptOne(t, l, 5*time.Second)
			if c == nil {
				t.Fatal("no connection accepted")
			}
			if got := c.RemoteAddr().String(); got != tt.src {
				t.Errorf("RemoteAddr = %s, want %s", got, tt.src)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
				t.Errorf("data after the header: %q, %v", buf, err)
			}
		})
	}
}

func TestLocalCommandKeepsThePeerAddress(t *testing.T) {
	l, _ := listen(t, Config{})
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	client := dialAndSend(t, l, b)
	c := acceptOne(t, l, 5*time.Second)
	if c == nil {
		t.Fatal("a LOCAL header (a proxy's health check) was rejected")
	}
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("RemoteAddr = %s, want the peer's %s", c.RemoteAddr(), client.LocalAddr())
	}
}

func TestRejectsConnectionsWithoutAValidHeader(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"plain data", []byte("hello, echo\r\n")},
		{"truncated v1", []byte("PROXY TCP4 203.0.113.7")},
		{"bad v1 address", []byte("PROXY TCP4 203.0.113.300 192.0.2.1 40000 7\r\n")},
		{"v2 signature, garbage after", append([]byte("\r\n\r\n\x00\r\nQUIT\n"), 0xff, 0xff, 0, 0)},
		{"nothing at all", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, log := listen(t, Config{HeaderTimeout: 300 * time.Millisecond})
			client := dialAndSend(t, l, tt.data)
			// The server closes the connection: the client reads EOF or a
			// reset, never an echo.
			if n, _ := client.Read(make([]byte, 64)); n != 0 {
				t.Errorf("read %d bytes from a rejected connection", n)
			}
			waitStats(t, l, Stats{Header: 1})
			// The next, valid, connection is the first one Accept returns.
			dialAndSend(t, l, header(t, 2, "203.0.113.11:1111"))
			if c := acceptOne(t, l, 5*time.Second); c == nil || c.RemoteAddr().String() != "203.0.113.11:1111" {
				t.Fatalf("after a rejection, accepted %v; want the valid connection", c)
			}
			// Stats counts a rejection just before it is logged; Close
			// waits for the goroutine that logs it.
			l.Close()
			if !strings.Contains(log.String(), "reason="+ReasonHeader) {
				t.Errorf("no rejection in the log:\n%s", log)
			}
		})
	}
}

func TestOnlyTrustedPeersMaySendAHeader(t *testing.T) {
	tests := []struct {
		trusted    string
		wantAccept bool
	}{
		{"127.0.0.0/8", true},
		{"10.0.0.0/8, 127.0.0.1", true},
		{"::ffff:127.0.0.1/128", true},
		{"10.0.0.0/8", false},
		{"::1/128", false},
	}
	for _, tt := range tests {
		t.Run(tt.trusted, func(t *testing.T) {
			trusted, err := ParseCIDRs(tt.trusted)
			if err != nil {
				t.Fatal(err)
			}
			l, log := listen(t, Config{Trusted: trusted})
			dialAndSend(t, l, header(t, 2, "203.0.113.9:50000"))
			if tt.wantAccept {
				if c := acceptOne(t, l, 5*time.Second); c == nil || c.RemoteAddr().String() != "203.0.113.9:50000" {
					t.Fatalf("accepted %v, want the client behind the header", c)
				}
				return
			}
			waitStats(t, l, Stats{Untrusted: 1})
			// Stats counts a rejection just before it is logged; Close
			// waits for the goroutine that logs it.
			l.Close()
			if !strings.Contains(log.String(), "reason="+ReasonUntrusted) {
				t.Errorf("no rejection in the log:\n%s", log)
			}
		})
	}
}

func TestRejectionLogIsRateLimited(t *testing.T) {
	l, log := listen(t, Config{LogInterval: time.Hour})
	for range 20 {
		client := dialAndSend(t, l, []byte("not a header at all, and long enough to tell\r\n"))
		client.Read(make([]byte, 1))
	}
	waitStats(t, l, Stats{Header: 20})
	// Stats counts each rejection just before it may be logged; Close waits
	// for the goroutines that log them, so every line is in.
	l.Close()
	if n := strings.Count(log.String(), "rejected connection"); n != 1 {
		t.Errorf("%d log lines for 20 rejections within the interval, want 1:\n%s", n, log)
	}
}

// A peer that connects and sends nothing holds one pending slot until the
// header timeout, and never blocks the connections behind it.
func TestSilentPeerDoesNotBlockOthers(t *testing.T) {
	l, _ := listen(t, Config{HeaderTimeout: time.Minute})
	dialAndSend(t, l, nil)
	dialAndSend(t, l, header(t, 1, "203.0.113.10:1234"))
	c := acceptOne(t, l, 5*time.Second)
	if c == nil || c.RemoteAddr().String() != "203.0.113.10:1234" {
		t.Fatalf("accepted %v behind a silent peer", c)
	}
}

// Close ends the accept loop and every connection still reading its header
// at once, whatever the header timeout (goleak checks the goroutines).
func TestCloseEndsPendingHeaderReads(t *testing.T) {
	l, _ := listen(t, Config{HeaderTimeout: time.Hour})
	var clients []net.Conn
	for range 5 {
		clients = append(clients, dialAndSend(t, l, []byte("PROXY ")))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	closed := make(chan struct{})
	go func() {
		l.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("Close blocked on connections reading their header")
	}
	for _, c := range clients {
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Error("read data from a connection closed by Close")
		}
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Accept after Close returned no error")
	}
}

// A header may arrive in pieces, as a slow proxy or a small MSS sends it:
// it is accepted once whole, within the header timeout. (The pauses are the
// slow sender under test, not synchronization.)
func TestHeaderInPieces(t *testing.T) {
	v1 := header(t, 1, "203.0.113.21:2100")
	v2 := header(t, 2, "203.0.113.22:2200")
	tests := []struct {
		name   string
		pieces [][]byte
		want   string
	}{
		{"v1 in two", [][]byte{v1[:9], append(v1[9:], "data"...)}, "203.0.113.21:2100"},
		{"v1 signature split", [][]byte{v1[:3], v1[3:], []byte("data")}, "203.0.113.21:2100"},
		{"v1 CR and LF apart", [][]byte{v1[:len(v1)-1], append(v1[len(v1)-1:], "data"...)}, "203.0.113.21:2100"},
		{"v2 in three", [][]byte{v2[:7], v2[7:17], append(v2[17:], "data"...)}, "203.0.113.22:2200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := listen(t, Config{HeaderTimeout: 5 * time.Second})
			c := dialAndSend(t, l, tt.pieces[0])
			go func() {
				for _, p := range tt.pieces[1:] {
					time.Sleep(30 * time.Millisecond)
					c.Write(p)
				}
			}()
			got := acceptOne(t, l, 5*time.Second)
			if got == nil || got.RemoteAddr().String() != tt.want {
				t.Fatalf("accepted %v, want the client %s", got, tt.want)
			}
			buf := make([]byte, 4)
			got.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "data" {
				t.Fatalf("data after the header: %q, %v", buf, err)
			}
		})
	}
}

// A v1 line that never ends is refused after 107 bytes, not read forever.
func TestV1HeaderTooLong(t *testing.T) {
	l, _ := listen(t, Config{HeaderTimeout: 5 * time.Second})
	dialAndSend(t, l, []byte("PROXY TCP4 "+strings.Repeat("1", 200)))
	waitStats(t, l, Stats{Header: 1})
}

// One address may keep only PendingPerIP connections waiting for their
// header; the next from it is reset, while other addresses are served.
func TestPendingPerIP(t *testing.T) {
	l, log := listen(t, Config{HeaderTimeout: time.Minute, PendingPerIP: 3})
	for range 3 {
		testkit.DialFrom(t, "127.0.0.1", l.Addr().String())
	}
	// The fourth is reset once the listener sees it.
	fourth := testkit.DialFrom(t, "127.0.0.1", l.Addr().String())
	fourth.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := fourth.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("fourth silent connection from one address: read %d, %v; want a reset", n, err)
	}
	waitStats(t, l, Stats{Pending: 1})
	other := testkit.DialFrom(t, "127.0.0.2", l.Addr().String())
	other.Write(header(t, 2, "203.0.113.30:3000"))
	if c := acceptOne(t, l, 5*time.Second); c == nil || c.RemoteAddr().String() != "203.0.113.30:3000" {
		t.Fatalf("accepted %v from another address, want its client", c)
	}
	l.Close()
	if !strings.Contains(log.String(), "reason="+ReasonPending) {
		t.Errorf("no rejection in the log:\n%s", log)
	}
}

// reserver is a Reserve that counts places by address, with a capacity.
type reserver struct {
	mu   sync.Mutex
	held map[netip.Addr]int
	max  int
}

func (r *reserver) Reserve(a netip.Addr) (func(), bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held[a] >= r.max {
		return func() {}, false
	}
	r.held[a]++
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.held[a]--
			r.mu.Unlock()
		})
	}, true
}

func (r *reserver) waitHeld(t *testing.T, a netip.Addr, want int) {
	t.Helper()
	var got int
	if !testkit.Eventually(5*time.Second, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		got = r.held[a]
		return got == want
	}) {
		t.Fatalf("%d places held for %v, want %d", got, a, want)
	}
}

// A connection holds a place under the peer's address while its header is
// awaited, and gives it back once the header is read or it is rejected; a
// peer the server has no place for is reset at once.
func TestReserveHoldsAPlaceWhileTheHeaderIsAwaited(t *testing.T) {
	r := &reserver{held: map[netip.Addr]int{}, max: 2}
	l, _ := listen(t, Config{HeaderTimeout: 300 * time.Millisecond, Reserve: r.Reserve})
	peer := netip.MustParseAddr("127.0.0.1")
	silent := testkit.DialFrom(t, "127.0.0.1", l.Addr().String())
	slow := testkit.DialFrom(t, "127.0.0.1", l.Addr().String())
	r.waitHeld(t, peer, 2)
	// No place left: the third is reset, and the listener counts nothing
	// (the server counts its own refusals).
	third := testkit.DialFrom(t, "127.0.0.1", l.Addr().String())
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := third.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection over the server's limit: read %d, %v; want a reset", n, err)
	}
	// A header read gives the place back: the server counts the client now.
	slow.Write(header(t, 1, "203.0.113.40:4000"))
	if c := acceptOne(t, l, 5*time.Second); c == nil {
		t.Fatal("the connection that sent its header was not accepted")
	}
	r.waitHeld(t, peer, 1)
	// So does a rejection, when the silent one times out.
	waitStats(t, l, Stats{Header: 1})
	r.waitHeld(t, peer, 0)
	silent.Close()
}

// Peers named in Trusted are proxies: exempt from PendingPerIP, and
// reserved for under the server's total only (the zero Addr), so that a
// per-IP limit meant for clients does not throttle the proxy.
func TestNamedProxiesAreCountedUnderTheTotalOnly(t *testing.T) {
	trusted, _ := ParseCIDRs("127.0.0.1")
	r := &reserver{held: map[netip.Addr]int{}, max: 100}
	l, _ := listen(t, Config{Trusted: trusted, PendingPerIP: 1, Reserve: r.Reserve})
	var conns []net.Conn
	for range 5 {
		conns = append(conns, testkit.DialFrom(t, "127.0.0.1", l.Addr().String()))
	}
	r.waitHeld(t, netip.Addr{}, 5)
	for i, c := range conns {
		c.Write(header(t, 2, fmt.Sprintf("203.0.113.50:%d", 5000+i)))
		if got := acceptOne(t, l, 5*time.Second); got == nil {
			t.Fatalf("connection %d from a named proxy was not accepted", i)
		}
	}
	r.waitHeld(t, netip.Addr{}, 0)
	if s := l.Stats(); s != (Stats{}) {
		t.Errorf("Stats = %+v, want no rejections", s)
	}
}

// A header naming a client over another transport than TCP gives no
// address to count by: the connection is served as the proxy's, like a
// LOCAL one, so that the per-IP limit still counts it.
func TestNonTCPTransportKeepsThePeerAddress(t *testing.T) {
	udp := &net.UDPAddr{IP: net.IPv4(203, 0, 113, 60), Port: 6000}
	tests := []struct {
		name string
		h    *proxyproto.Header
	}{
		{"UDP over IPv4", &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UDPv4,
			SourceAddr: udp, DestinationAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7}}},
		{"UDP over IPv6", &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UDPv6,
			SourceAddr: &net.UDPAddr{IP: net.ParseIP("2001:db8::60"), Port: 6000}, DestinationAddr: &net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 7}}},
		{"Unix stream", &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
			SourceAddr: &net.UnixAddr{Net: "unix", Name: "/run/client"}, DestinationAddr: &net.UnixAddr{Net: "unix", Name: "/run/echo"}}},
		{"v1 UNKNOWN", &proxyproto.Header{Version: 1, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UNSPEC}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := listen(t, Config{})
			b, err := tt.h.Format()
			if err != nil {
				t.Fatal(err)
			}
			client := dialAndSend(t, l, b)
			c := acceptOne(t, l, 5*time.Second)
			if c == nil {
				t.Fatal("not accepted")
			}
			if got := c.RemoteAddr().String(); got != client.LocalAddr().String() {
				t.Errorf("RemoteAddr = %s, want the proxy's %s", got, client.LocalAddr())
			}
			if _, ok := c.RemoteAddr().(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr is a %T, want a *net.TCPAddr the per-IP limit counts", c.RemoteAddr())
			}
		})
	}
}

// A Unix stream listener (a socket systemd may pass) works too: its peers
// have no IP address, so only an empty Trusted list lets them in.
func TestUnixListener(t *testing.T) {
	for _, tt := range []struct {
		trusted    string
		wantAccept bool
	}{{"", true}, {"127.0.0.1", false}} {
		inner, err := net.Listen("unix", t.TempDir()+"/echo.sock")
		if err != nil {
			t.Skipf("no Unix sockets here: %v", err)
		}
		var cfg Config
		if tt.trusted != "" {
			cfg.Trusted, _ = ParseCIDRs(tt.trusted)
		}
		l := NewListener(inner, cfg)
		c, err := net.Dial("unix", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(append(header(t, 2, "203.0.113.70:7000"), "hi"...))
		if tt.wantAccept {
			got := acceptOne(t, l, 5*time.Second)
			if got == nil || got.RemoteAddr().String() != "203.0.113.70:7000" {
				t.Errorf("accepted %v, want the client in the header", got)
			} else if err := got.(*Conn).CloseWrite(); err != nil {
				t.Errorf("CloseWrite on a Unix socket: %v", err)
			}
		} else {
			waitStats(t, l, Stats{Untrusted: 1})
		}
		c.Close()
		l.Close()
	}
}
