package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"

	"github.com/echod/echod/internal/testkit"
)

// scrape fetches /metrics and returns each series (name and labels) with its
// value.
func scrape(t *testing.T, adminAddr string) map[string]float64 {
	t.Helper()
	code, body := testkit.Get(t, "http://"+adminAddr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d", code)
	}
	series := map[string]float64{}
	lines := bufio.NewScanner(strings.NewReader(body))
	for lines.Scan() {
		line := lines.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample %q: %v", line, err)
		}
		series[line[:i]] = v
	}
	return series
}

// waitMetric scrapes until cond holds for the series, or fails.
func waitMetric(t *testing.T, adminAddr, what string, cond func(m map[string]float64) bool) map[string]float64 {
	t.Helper()
	var m map[string]float64
	if !testkit.Eventually(10*time.Second, func() bool {
		m = scrape(t, adminAddr)
		return cond(m)
	}) {
		t.Fatalf("metrics never showed %s; last scrape: %v", what, m)
	}
	return m
}

// holdOpen opens a TCP session and proves it is served with a one-byte echo.
func holdOpen(t *testing.T, addr string) net.Conn {
	t.Helper()
	c := testkit.Dial(t, addr)
	if _, err := c.Write([]byte{'x'}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("held session not served: %v", err)
	}
	return c
}

func TestAdminMetricsMoveUnderLoad(t *testing.T) {
	for _, engine := range []string{"goroutine", "auto"} {
		t.Run(engine, func(t *testing.T) { testMetricsUnderLoad(t, engine) })
	}
}

func testMetricsUnderLoad(t *testing.T, engine string) {
	addrs, _ := startServeAll(t, 3, "-listen", "127.0.0.1:0", "-udp", "-admin", "127.0.0.1:0", "-max-conns-per-ip", "2", "-engine", engine)
	tcpAddr, udpAddr, adminAddr := addrs["tcp"][0], addrs["udp"][0], addrs["http"][0]
	before := scrape(t, adminAddr)
	for _, name := range []string{
		`echod_rejected_total{reason="max-conns"}`, `echod_rejected_total{reason="proxy-header"}`,
		"go_goroutines", "process_resident_memory_bytes", "process_open_fds",
	} {
		if _, ok := before[name]; !ok {
			t.Errorf("/metrics has no %s before any traffic", name)
		}
	}

	// Ten sessions of 100,000 bytes each, one after the other.
	input := make([]byte, 100000)
	pattern.NewStream(5).Read(input)
	for range 10 {
		if code, out, errOut := runCmd(t, bytes.NewReader(input), "send", "-addr", tcpAddr, "-verify"); code != 0 || len(out) != len(input) {
			t.Fatalf("send: exit %d, %d bytes, %s", code, len(out), errOut)
		}
	}
	// Two sessions held open, and a third from the same address refused by
	// -max-conns-per-ip 2. The client sees a session's EOF a moment before
	// the server gives its place back: wait for the places of the sends.
	testkit.WaitFor(t, "the sends' connections to end", func() bool {
		return scrape(t, adminAddr)["echod_connections_active"] == 0
	})
	holdOpen(t, tcpAddr)
	holdOpen(t, tcpAddr)
	// The refusal is a reset, which on loopback can beat even the
	// connect's return.
	if refused, err := net.Dial("tcp", tcpAddr); err == nil {
		defer refused.Close()
		refused.SetDeadline(time.Now().Add(10 * time.Second))
		refused.Read(make([]byte, 1))
	}
	// Five UDP datagrams of 100 bytes, each different: the loop guard
	// drops a datagram that repeats what was just echoed to its source.
	uc, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	for i := range 5 {
		uc.Write(input[i*100 : (i+1)*100])
		if n, err := uc.Read(make([]byte, 200)); err != nil || n != 100 {
			t.Fatalf("UDP echo: %d bytes, %v", n, err)
		}
	}

	// The server counts a write once it returns, which can be a moment
	// after the client has read the bytes; so wait for the counts.
	want := map[string]float64{
		"echod_connections_total":                         12,
		`echod_bytes_total{proto="tcp",direction="in"}`:   1000002,
		`echod_bytes_total{proto="tcp",direction="out"}`:  1000002,
		`echod_udp_datagrams_total{direction="in"}`:       5,
		`echod_udp_datagrams_total{direction="out"}`:      5,
		`echod_bytes_total{proto="udp",direction="in"}`:   500,
		`echod_bytes_total{proto="udp",direction="out"}`:  500,
		`echod_rejected_total{reason="max-conns-per-ip"}`: 1,
		`echod_rejected_total{reason="udp-rate-limit"}`:   0,
		`echod_rejected_total{reason="proxy-untrusted"}`:  0,
		"echod_accept_errors_total":                       0,
	}
	var wrong []string
	if !testkit.Eventually(10*time.Second, func() bool {
		after := scrape(t, adminAddr)
		wrong = nil
		for name, w := range want {
			if got := after[name] - before[name]; got != w {
				wrong = append(wrong, fmt.Sprintf("%s grew by %v, want %v", name, got, w))
			}
		}
		if after["echod_connections_active"] != 2 || after["echod_ready"] != 1 {
			wrong = append(wrong, fmt.Sprintf("connections_active %v, ready %v; want 2 and 1", after["echod_connections_active"], after["echod_ready"]))
		}
		return len(wrong) == 0
	}) {
		t.Fatalf("after the load:\n%s", strings.Join(wrong, "\n"))
	}
}

func TestAdminCountsPROXYRejections(t *testing.T) {
	addrs, _ := startServeAll(t, 2, "-listen", "127.0.0.1:0", "-proxy-protocol", "-admin", "127.0.0.1:0")
	for range 3 {
		got, _ := echoThrough(t, addrs["tcp"][0], []byte("no header"))
		if len(got) != 0 {
			t.Fatalf("got %q back without a PROXY header", got)
		}
	}
	waitMetric(t, addrs["http"][0], "3 PROXY header rejections", func(m map[string]float64) bool {
		return m[`echod_rejected_total{reason="proxy-header"}`] == 3
	})
}

var adminListening = regexp.MustCompile(`msg=listening proto=http addr=(\S+)`)

// /readyz turns 503 the moment a drain starts, so load balancers stop
// sending connections, while /healthz stays 200 and open sessions finish.
func TestReadyzFlipsWhenTheDrainStarts(t *testing.T) {
	cmd, lines, addr := startProcess(t, "-admin", "127.0.0.1:0", "-shutdown-timeout", "30s")
	adminAddr := waitMatch(t, lines, adminListening)
	if code, body := testkit.Get(t, "http://"+adminAddr+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz before the drain: %d %q, want 200", code, body)
	}
	c := holdOpen(t, addr)

	cmd.Process.Signal(syscall.SIGTERM)
	waitLine(t, lines, "shutting down")
	if code, _ := testkit.Get(t, "http://"+adminAddr+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain: %d, want 503", code)
	}
	if code, _ := testkit.Get(t, "http://"+adminAddr+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the drain: %d, want 200", code)
	}
	m := scrape(t, adminAddr)
	if m["echod_ready"] != 0 || m["echod_connections_active"] != 1 {
		t.Errorf("during the drain: echod_ready %v, connections_active %v; want 0 and 1", m["echod_ready"], m["echod_connections_active"])
	}

	// The open session still echoes, then ends, and so does echod.
	c.Write([]byte("bye"))
	c.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "bye" {
		t.Fatalf("during the drain got %q, %v", got, err)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("echod exited with %v, want status 0", err)
	}
}

func TestAdminUsage(t *testing.T) {
	code, _, errOut := runCmd(t, nil, "serve", "-admin", "9090")
	if code != 2 || !strings.Contains(errOut, `invalid -admin "9090"`) {
		t.Errorf("-admin 9090: exit %d, stderr %q; want exit 2 naming the flag", code, errOut)
	}
	busy := testkit.Listen(t)
	code, _, errOut = runCmd(t, nil, "serve", "-listen", "127.0.0.1:0", "-admin", busy.Addr().String())
	if code != 1 || !strings.Contains(errOut, "-admin: ") || !strings.Contains(errOut, "address already in use") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("-admin on a busy port: exit %d, stderr %q; want exit 1 and one line", code, errOut)
	}
}
