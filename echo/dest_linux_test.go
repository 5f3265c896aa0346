package echo

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func pktinfo4(spec, dst string) []byte {
	return unix.PktInfo4(&unix.Inet4Pktinfo{
		Ifindex:  1,
		Spec_dst: netip.MustParseAddr(spec).As4(),
		Addr:     netip.MustParseAddr(dst).As4(),
	})
}

func pktinfo6(dst string) []byte {
	return unix.PktInfo6(&unix.Inet6Pktinfo{Addr: netip.MustParseAddr(dst).As16(), Ifindex: 1})
}

func TestUnicastDest(t *testing.T) {
	tests := []struct {
		name string
		oob  []byte
		want bool
	}{
		{"no information", nil, true},
		{"IPv4 unicast", pktinfo4("192.0.2.2", "192.0.2.2"), true},
		{"IPv4 loopback", pktinfo4("127.0.0.5", "127.0.0.5"), true},
		{"IPv4 subnet broadcast", pktinfo4("192.0.2.2", "192.0.2.255"), false},
		{"IPv4 loopback broadcast", pktinfo4("127.0.0.1", "127.255.255.255"), false},
		{"IPv4 limited broadcast", pktinfo4("192.0.2.2", "255.255.255.255"), false},
		{"IPv4 multicast", pktinfo4("192.0.2.2", "224.0.0.1"), false},
		{"IPv4 without spec_dst", pktinfo4("0.0.0.0", "192.0.2.2"), true},
		{"IPv6 unicast", pktinfo6("2001:db8::1"), true},
		{"IPv6 multicast", pktinfo6("ff02::1"), false},
		{"dual-stack IPv4 unicast", append(pktinfo6("::ffff:192.0.2.2"), pktinfo4("192.0.2.2", "192.0.2.2")...), true},
		{"dual-stack IPv4 broadcast", append(pktinfo6("::ffff:192.0.2.255"), pktinfo4("192.0.2.2", "192.0.2.255")...), false},
		{"dual-stack IPv4 multicast, no IP_PKTINFO", pktinfo6("::ffff:224.0.0.1"), false},
		{"truncated", pktinfo4("192.0.2.2", "192.0.2.255")[:12], true},
	}
	for _, tt := range tests {
		if got := unicastDest(tt.oob); got != tt.want {
			t.Errorf("%s: unicastDest = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestUDPIgnoresBroadcastDatagrams(t *testing.T) {
	// A socket bound to the loopback network's broadcast address receives
	// what is sent there, which is all the test sends: nothing leaves lo.
	pc, err := net.ListenPacket("udp4", "127.255.255.255:0")
	if err != nil {
		t.Skipf("cannot bind the loopback broadcast address: %v", err)
	}
	srv := &Server{}
	done := make(chan error, 1)
	go func() { done <- srv.ServeUDP(context.Background(), pc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeUDP returned %v", err)
		}
	})
	// Datagrams that arrived before ServeUDP asked for their destination
	// carry none, so wait until it has.
	waitFor(t, "ServeUDP to start", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return len(srv.listeners) == 1
	})
	c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1) })
	if _, err := c.WriteToUDPAddrPort([]byte("to everyone"), pc.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
		t.Fatal(err)
	}
	expectDropped(t, srv, ReasonUDPBadDestination, 1, c)
}

// FuzzUnicastDest feeds unicastDest arbitrary control-message bytes: it
// must never panic or read past what it is given, whatever the kernel (or
// a bug) hands it.
func FuzzUnicastDest(f *testing.F) {
	f.Add([]byte(nil))
	f.Add(pktinfo4("192.0.2.2", "192.0.2.255"))
	f.Add(append(pktinfo6("::ffff:192.0.2.2"), pktinfo4("192.0.2.2", "192.0.2.2")...))
	f.Add(pktinfo6("ff02::1")[:20])
	f.Fuzz(func(t *testing.T, oob []byte) {
		unicastDest(oob)
	})
}
