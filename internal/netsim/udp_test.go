package netsim_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/testkit"
)

// udpEcho answers each datagram with itself.
func udpEcho(t *testing.T) string {
	return testkit.ServeUDP(t, "127.0.0.1:0", 64<<10, func(p []byte) [][]byte {
		return [][]byte{append([]byte(nil), p...)}
	})
}

func startUDP(t *testing.T, target string, path netsim.Path) *netsim.Proxy {
	t.Helper()
	p, err := netsim.StartUDP(context.Background(), target, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// exchange sends msg on c and returns the answer, or nil when none comes
// within wait.
func exchange(t *testing.T, c net.Conn, msg []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func dialUDP(t *testing.T, addr string) net.Conn {
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestUDPDelay(t *testing.T) {
	const delay = 30 * time.Millisecond
	p := startUDP(t, udpEcho(t), netsim.Path{Delay: delay})
	c := dialUDP(t, p.Addr())
	start := time.Now()
	if got := exchange(t, c, []byte("ping"), 5*time.Second); string(got) != "ping" {
		t.Fatalf("answer %q, want ping", got)
	}
	if rtt := time.Since(start); rtt < 2*delay {
		t.Errorf("round trip %v through %v each way", rtt, delay)
	}
}

func TestUDPSegmentDropsLargeDatagrams(t *testing.T) {
	p := startUDP(t, udpEcho(t), netsim.Path{Segment: 1200})
	c := dialUDP(t, p.Addr())
	if got := exchange(t, c, make([]byte, 1200), 5*time.Second); len(got) != 1200 {
		t.Fatalf("a 1200-byte datagram came back as %d bytes", len(got))
	}
	// Only a missing answer is checked: the wait is how long "dropped" is
	// given to be wrong.
	if got := exchange(t, c, make([]byte, 1201), 300*time.Millisecond); got != nil {
		t.Errorf("a 1201-byte datagram came back through a 1200-byte path")
	}
}

func TestUDPIdleTimeoutStartsNewFlow(t *testing.T) {
	ports := make(chan int, 10)
	// ServeUDP's reply cannot see the peer, so a socket of the test's own
	// serves, telling the test each datagram's source port.
	pc := testkit.ListenUDP(t, "127.0.0.1:0")
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				close(ports)
				return
			}
			select {
			case ports <- from.Port:
			default:
			}
			pc.WriteToUDP(buf[:n], from)
		}
	}()
	const idle = 200 * time.Millisecond
	p := startUDP(t, pc.LocalAddr().String(), netsim.Path{IdleTimeout: idle})
	c := dialUDP(t, p.Addr())
	exchange(t, c, []byte("a"), 5*time.Second)
	exchange(t, c, []byte("b"), 5*time.Second)
	first, second := <-ports, <-ports
	if first != second {
		t.Fatalf("a busy flow moved from port %d to %d", first, second)
	}
	// Being quiet is what is tested, so the test is quiet for a while
	// rather than waiting on a condition: any datagram would keep the flow.
	time.Sleep(2 * idle)
	exchange(t, c, []byte("c"), 5*time.Second)
	if third := <-ports; third == first {
		t.Errorf("after %v of quiet the flow still came from port %d, want a new flow", 2*idle, first)
	}
}

func TestUDPTamper(t *testing.T) {
	p := startUDP(t, udpEcho(t), netsim.Path{Tamper: netsim.Tamper{Kind: netsim.Flip, At: 3}})
	c := dialUDP(t, p.Addr())
	for range 2 { // every datagram, not only the first
		if got := exchange(t, c, []byte("abcdef"), 5*time.Second); string(got) != "abc\x9bef" {
			t.Errorf("answer %q, want the fourth byte flipped", got)
		}
	}
}
