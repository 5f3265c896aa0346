package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// udpEcho sends msg from c to addr and returns the reply.
func udpEcho(t *testing.T, c net.PacketConn, addr net.Addr, msg string) string {
	t.Helper()
	if _, err := c.WriteTo([]byte(msg), addr); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no reply to %q: %v", msg, err)
	}
	return string(buf[:n])
}

func TestServeUDPOnEveryListenAddress(t *testing.T) {
	byProto, _ := startServeAll(t, 4, "-udp", "-listen", "127.0.0.1:0", "-listen", "[::1]:0")
	addrs := byProto["udp"]
	if len(addrs) != 2 {
		t.Fatalf("UDP listens on %v, want two addresses", addrs)
	}
	for i, addr := range addrs {
		if tcp := byProto["tcp"][i]; tcp != addr {
			t.Errorf("UDP listens on %s, TCP on %s; want the same address", addr, tcp)
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.ListenPacket("udp", "localhost:0")
		if ua.IP.To4() == nil {
			c, err = net.ListenPacket("udp", "[::1]:0")
		}
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := udpEcho(t, c, ua, "Ground Control"); got != "Ground Control" {
			t.Errorf("UDP echo from %s = %q", addr, got)
		}
		// TCP is served as before.
		code, out, _ := runCmd(t, nil, "send", "-addr", addr, "Major Tom")
		if code != 0 || out != "Major Tom" {
			t.Errorf("TCP echo from %s: exit %d, %q", addr, code, out)
		}
	}
}

func TestServeWithoutUDPFlagServesNoUDP(t *testing.T) {
	_, log := startServeAll(t, 1, "-listen", "127.0.0.1:0")
	if strings.Contains(log.String(), "proto=udp") {
		t.Fatalf("UDP served without -udp:\n%s", log.String())
	}
}

func TestServeUDPIgnoresDatagramFromChargenPort(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binding port 19 needs root")
	}
	byProto, log := startServeAll(t, 2, "-udp", "-listen", "127.0.0.1:0")
	server, err := net.ResolveUDPAddr("udp", byProto["udp"][0])
	if err != nil {
		t.Fatal(err)
	}
	chargen, err := net.ListenPacket("udp", "127.0.0.1:19")
	if err != nil {
		t.Skipf("bind port 19: %v", err)
	}
	defer chargen.Close()
	if _, err := chargen.WriteTo([]byte("!\"#$%&'()*+,-./0123456789"), server); err != nil {
		t.Fatal(err)
	}
	// The drop is logged at once (the first of a period is).
	waitLog(t, log, "count.udp-privileged-port=1")
	chargen.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := chargen.ReadFrom(make([]byte, 100)); err == nil {
		t.Fatalf("port 19 got a %d-byte reply", n)
	}
}

// dialEcho connects to addr and proves the server serves the connection.
func dialEcho(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := testkit.Dial(t, addr)
	echoOn(t, c, "hello")
	return c
}

func echoOn(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo of %q: %v", msg, err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}

// refused reports whether a connection to addr is closed by the server
// without an echo.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return errors.Is(err, syscall.ECONNRESET)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hi"))
	_, err = c.Read(make([]byte, 2))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestServeMaxConnsRefusesTheEleventh(t *testing.T) {
	byProto, log := startServeAll(t, 1, "-listen", "127.0.0.1:0", "-max-conns", "10")
	addrs := byProto["tcp"]
	var first []net.Conn
	for range 10 {
		first = append(first, dialEcho(t, addrs[0]))
	}
	if !refused(addrs[0]) {
		t.Fatal("the 11th connection was served")
	}
	for i, c := range first {
		echoOn(t, c, fmt.Sprintf("client %d keeps echoing", i))
	}
	waitLog(t, log, "count.max-conns=1")
}

func TestServeIdleTimeout(t *testing.T) {
	// A second, so that a busy machine holding the test up between the
	// connect and dialEcho's round trip does not close it first.
	byProto, log := startServeAll(t, 1, "-listen", "127.0.0.1:0", "-idle-timeout", "1s", "-log-level", "debug")
	addrs := byProto["tcp"]
	c := dialEcho(t, addrs[0])
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("idle client: read %v, want EOF from the server", err)
	}
	waitLog(t, log, "reason=idle-timeout")
}

// childFDs counts the open file descriptors of process pid.
func childFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot count the server's open files: %v", err)
	}
	return len(fds)
}

// startLimitedProcess runs echod serve in a child process whose open-file
// limit is nofile, and collects its log.
func startLimitedProcess(t *testing.T, nofile int, args ...string) (pid int, addr string, log *testkit.Buffer) {
	t.Helper()
	t.Setenv("ECHOD_TEST_NOFILE", fmt.Sprint(nofile))
	cmd, lines, addr := startProcess(t, args...)
	log = new(testkit.Buffer)
	var wg sync.WaitGroup
	wg.Go(func() {
		for lines.Scan() {
			fmt.Fprintln(log, lines.Text())
		}
	})
	t.Cleanup(func() {
		cmd.Process.Kill()
		wg.Wait()
	})
	return cmd.Process.Pid, addr, log
}

func TestServeRecoversFromFileDescriptorExhaustion(t *testing.T) {
	for _, engine := range []string{"goroutine", "epoll"} {
		t.Run(engine, func(t *testing.T) {
			// Without -max-conns the server runs into its open-file limit of 40.
			pid, addr, log := startLimitedProcess(t, 40, "-max-conns", "0", "-engine", engine)
			first := dialEcho(t, addr)
			// Counted once a connection is served, so that the engine
			// has started (the event loops hold descriptors of their
			// own); the connection itself holds one.
			baseline := childFDs(t, pid) - 1
			conns := []net.Conn{first}
			for range 49 {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Fatal(err) // the kernel's backlog takes what echod cannot
				}
				t.Cleanup(func() { c.Close() })
				conns = append(conns, c)
			}
			waitLog(t, log, "too many open files")
			// The connections it has keep working while accept fails.
			echoOn(t, first, "still served")

			// Once clients leave, the waiting connections are accepted and served.
			for _, c := range conns[:30] {
				c.Close()
			}
			for i, c := range conns[30:] {
				echoOn(t, c, fmt.Sprintf("waited in the backlog %d", i))
			}
			// Dozens of failed accepts, one log line a period.
			if n := strings.Count(log.String(), "accept failed"); n > 2 {
				t.Errorf("%d log lines about failed accepts, want at most one per 10s:\n%s", n, log.String())
			}
			// Every descriptor comes back when the clients are gone.
			for _, c := range conns[30:] {
				c.Close()
			}
			if !testkit.Eventually(10*time.Second, func() bool { return childFDs(t, pid) <= baseline }) {
				t.Fatalf("echod holds %d descriptors with no clients, %d at start", childFDs(t, pid), baseline)
			}
		})
	}
}

func TestServeDefaultMaxConnsAvoidsFileDescriptorExhaustion(t *testing.T) {
	// With an open-file limit of 100, the default -max-conns is 50: the
	// server refuses connections beyond it rather than running out of
	// descriptors.
	_, addr, log := startLimitedProcess(t, 100)
	var served []net.Conn
	for range 50 {
		served = append(served, dialEcho(t, addr))
	}
	for range 10 {
		if !refused(addr) {
			t.Fatal("a connection beyond the default limit was served")
		}
	}
	echoOn(t, served[0], "first still served")
	// The first refusal is logged at once; the event loop counts refusals
	// as they happen, so that line may already carry several of the ten.
	waitLog(t, log, "count.max-conns=")
	if strings.Contains(log.String(), "accept failed") {
		t.Errorf("ran out of descriptors despite the default limit:\n%s", log.String())
	}
}

// A datagram socket from systemd (ListenDatagram=) is served as UDP echo,
// with the loop guard and limits, without -udp.
func TestSocketActivationServesInheritedUDPSocket(t *testing.T) {
	_, lines, addr := startActivated(t, []string{"--datagram"}, nil)
	server, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := testkit.ListenUDP(t, "127.0.0.1:0")
	// systemd-socket-activate starts echod on the first datagram, which
	// waits in the socket's queue meanwhile.
	if got := udpEcho(t, c, server, "activated"); got != "activated" {
		t.Fatalf("UDP echo through the inherited socket: %q", got)
	}
	waitLine(t, lines, "msg=listening proto=udp addr="+addr)
}
