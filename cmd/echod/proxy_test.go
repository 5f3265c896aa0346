package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
	"github.com/pires/go-proxyproto"

	"github.com/echod/echod/daemon"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/tooltest"
)

// startHAProxy runs HAProxy in TCP mode in front of backend, with
// serverOptions on its server line (send-proxy, send-proxy-v2), and returns
// the address clients connect to.
func startHAProxy(t *testing.T, backend, serverOptions string) string {
	t.Helper()
	haproxy := tooltest.Require(t, "haproxy")
	// HAProxy serves a socket the test opened (bind fd@3), so there is no
	// race for a free port and no wait for it to start listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	config := fmt.Sprintf(`global
    maxconn 256
defaults
    mode tcp
    timeout connect 5s
    retries 0
    timeout client 30s
    timeout server 30s
frontend echo
    bind fd@3
    default_backend echod
backend echod
    server echod %s %s
`, backend, serverOptions)
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", path)
	cmd.ExtraFiles = []*os.File{f}
	var stderr testkit.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy's output:\n%s", stderr.String())
		}
	})
	return l.Addr().String()
}

// echoThrough sends msg on a new connection to addr, half-closes, and
// returns what came back and the client's own address.
func echoThrough(t *testing.T, addr string, msg []byte) ([]byte, string) {
	t.Helper()
	c := testkit.Dial(t, addr)
	go func() {
		c.Write(msg)
		c.CloseWrite()
	}()
	got, _ := io.ReadAll(c)
	return got, c.LocalAddr().String()
}

// waitLog waits until the log contains every one of want.
func waitLog(t *testing.T, log *testkit.Buffer, want ...string) {
	t.Helper()
	missing := ""
	if !testkit.Eventually(10*time.Second, func() bool {
		missing = ""
		for _, w := range want {
			if !strings.Contains(log.String(), w) {
				missing = w
				break
			}
		}
		return missing == ""
	}) {
		t.Fatalf("the log has no %q:\n%s", missing, log.String())
	}
}

// Behind a real HAProxy, echod echoes as ever and logs the client's own
// address, which only the PROXY header carries: HAProxy's connection to
// echod comes from another port.
func TestPROXYProtocolBehindHAProxy(t *testing.T) {
	tests := []struct {
		name, serverOptions string
		args                []string
	}{
		{"v2", "send-proxy-v2", nil},
		{"v1", "send-proxy", nil},
		{"v2 from a trusted range", "send-proxy-v2", []string{"-proxy-protocol-from", "10.0.0.0/8,127.0.0.0/8"}},
		{"v2 with the epoll engine", "send-proxy-v2", []string{"-engine", "epoll"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-listen", "127.0.0.1:0", "-proxy-protocol", "-log-level", "debug"}, tt.args...)
			addrs, log := startServeAll(t, 1, args...)
			front := startHAProxy(t, addrs["tcp"][0], tt.serverOptions)
			msg := bytes.Repeat([]byte("Ground Control To Major Tom\x00\xff"), 10000)
			got, client := echoThrough(t, front, msg)
			if !bytes.Equal(got, msg) {
				t.Fatalf("through HAProxy got %d bytes back of %d", len(got), len(msg))
			}
			waitLog(t, log, "msg=\"connection closed\" remote="+client+" bytes_in=290000 bytes_out=290000")
		})
	}
}

func TestPROXYProtocolRejectsConnectionsWithoutHeader(t *testing.T) {
	addrs, log := startServeAll(t, 1, "-listen", "127.0.0.1:0", "-proxy-protocol")
	got, client := echoThrough(t, addrs["tcp"][0], []byte("hello"))
	if len(got) != 0 {
		t.Fatalf("a connection without a PROXY header got %q back", got)
	}
	waitLog(t, log, "level=WARN msg=\"rejected connection\" reason=proxy-header remote="+client)
}

func TestPROXYProtocolFromUntrustedPeerIsRejected(t *testing.T) {
	addrs, log := startServeAll(t, 1, "-listen", "127.0.0.1:0", "-proxy-protocol", "-proxy-protocol-from", "10.0.0.0/8")
	front := startHAProxy(t, addrs["tcp"][0], "send-proxy-v2")
	got, _ := echoThrough(t, front, []byte("hello"))
	if len(got) != 0 {
		t.Fatalf("a connection from an untrusted proxy got %q back", got)
	}
	waitLog(t, log, "level=WARN msg=\"rejected connection\" reason=proxy-untrusted remote=127.0.0.1:")
}

// The PROXY header comes before the TLS handshake, as load balancers send it.
func TestPROXYProtocolWithTLS(t *testing.T) {
	certFile, keyFile, cert := testcert.Write(t, t.TempDir(), "server", "echod test")
	addrs, log := startServeAll(t, 1, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-proxy-protocol", "-log-level", "debug")
	raw := testkit.Dial(t, addrs["tls"][0])
	h := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 42), Port: 4242}, raw.RemoteAddr())
	if _, err := h.WriteTo(raw); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	c := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	c.Write([]byte("secret"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "secret" {
		t.Fatalf("PROXY then TLS: got %q, %v", got, err)
	}
	waitLog(t, log, "remote=203.0.113.42:4242 bytes_in=6 bytes_out=6")
}

func TestPROXYProtocolUsage(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"from without the protocol", []string{"-proxy-protocol-from", "10.0.0.0/8"}, "-proxy-protocol-from needs -proxy-protocol"},
		{"bad network", []string{"-proxy-protocol", "-proxy-protocol-from", "10.0.0.0/8,10.0.0.300/32"}, `invalid network "10.0.0.300/32"`},
		{"empty item", []string{"-proxy-protocol", "-proxy-protocol-from", "10.0.0.0/8,"}, "empty network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, nil, append([]string{"serve"}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line with %q", code, errOut, tt.wantErr)
			}
		})
	}
}

// Limits count clients by the address in the PROXY header: two clients
// behind one proxy are two addresses, and one client cannot dodge its limit
// by coming through the proxy.
func TestPROXYProtocolLimitsUseTheClientAddress(t *testing.T) {
	addrs, _ := startServeAll(t, 1, "-listen", "127.0.0.1:0", "-proxy-protocol", "-max-conns-per-ip", "1")
	dialAs := func(client string) net.Conn {
		t.Helper()
		c := testkit.Dial(t, addrs["tcp"][0])
		src := net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client))
		if _, err := proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr()).WriteTo(c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	echoes := func(c net.Conn) bool {
		if _, err := c.Write([]byte("x")); err != nil {
			return false
		}
		n, _ := c.Read(make([]byte, 1))
		return n == 1
	}
	if first := dialAs("203.0.113.1:1000"); !echoes(first) {
		t.Fatal("the first client's first connection was not served")
	}
	if other := dialAs("203.0.113.2:2000"); !echoes(other) {
		t.Fatal("another client behind the same proxy was refused")
	}
	if again := dialAs("203.0.113.1:3000"); echoes(again) {
		t.Fatal("the first client's second connection was served despite -max-conns-per-ip 1")
	}
}

// A flood of silent connections from one address, as in the attack that
// stalled valid clients 4.8 s (p50): 1,100 opened at once and refilled about
// 300 a second. Only -proxy-pending-per-ip of them wait for their header;
// the rest are reset, and a client from another address is served at once.
func TestPROXYSilentFloodDoesNotStallOthers(t *testing.T) {
	if n := daemon.DefaultMaxConns(); n != 0 && n < 5000 {
		t.Skipf("the flood needs about 5,000 file descriptors; the open-file limit allows about %d", n)
	}
	addr := startServe(t, 1, "-listen", "127.0.0.1:0", "-proxy-protocol")[0]
	testkit.DialFrom(t, "127.0.0.2", addr).Close()

	const initial, refillEvery, mostRefills = 1100, time.Second / 300, 3000
	stop := make(chan struct{})
	flooding := make(chan struct{})
	var flood []net.Conn
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-start:
		case <-stop:
			return
		}
		tick := time.NewTicker(refillEvery)
		defer tick.Stop()
		for i := range initial + mostRefills {
			if i == initial {
				close(flooding)
			}
			if i >= initial {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				flood = append(flood, c)
			}
		}
	})
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		for _, c := range flood {
			c.Close()
		}
	})
	quiet := timeValidClients(addr, 20)
	close(start)
	<-flooding
	flooded := timeValidClients(addr, 20)
	t.Logf("valid clients' echo latency, p50 and max: %v and %v without a flood; %v and %v under a flood of %d silent connections from one address",
		quiet[10], quiet[19], flooded[10], flooded[19], initial)
	if flooded[0] < 0 {
		t.Fatal("a valid client was not served during the flood")
	}
	// The header timeout is 5 s; a client that waited for a pending place
	// would take seconds.
	if flooded[10] > 500*time.Millisecond || flooded[19] > 2*time.Second {
		t.Fatalf("valid clients waited p50 %v, max %v behind a silent flood", flooded[10], flooded[19])
	}
}

// timeValidClients connects n clients from 127.0.0.2 to addr, one every
// 50 ms, each sending a PROXY header and 4 bytes, and returns the times from
// their dials to their echoes, sorted; -1 for a client not served.
func timeValidClients(addr string, n int) []time.Duration {
	latencies := make([]time.Duration, n)
	var served sync.WaitGroup
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	for i := range n {
		<-pace.C
		served.Go(func() {
			latencies[i] = -1
			start := time.Now()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 20 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			src := net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("203.0.113.77"), uint16(1000+i)))
			hdr, _ := proxyproto.HeaderProxyFromAddrs(1, src, c.RemoteAddr()).Format()
			if _, err := c.Write(append(hdr, "ping"...)); err != nil {
				return
			}
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				return
			}
			latencies[i] = time.Since(start)
		})
	}
	served.Wait()
	slices.Sort(latencies)
	return latencies
}

// A header that names a UDP or Unix client gives no address to limit: such
// connections count under the proxy's address, so one claimed client gets
// no more than -max-conns-per-ip (20 of 20 were served before).
func TestPROXYNonTCPClientsCountUnderTheProxy(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0", "-proxy-protocol", "-max-conns-per-ip", "5")[0]
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UDPv4,
		SourceAddr:      &net.UDPAddr{IP: net.IPv4(203, 0, 113, 5), Port: 5000},
		DestinationAddr: &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 7}}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	served := 0
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			continue // reset as soon as accepted: refused
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(append(b, 'x'))
		if n, _ := c.Read(make([]byte, 1)); n == 1 {
			served++
		}
	}
	if served != 5 {
		t.Fatalf("%d of 20 connections from one claimed UDP client served, want 5 (-max-conns-per-ip)", served)
	}
}
