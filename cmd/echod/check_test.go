package main

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/check"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

// resultLines matches the lines of a text report: one per check, then the
// summary.
var resultLines = regexp.MustCompile(`^(PASS [a-z0-9/-]+ \(.+\)|FAIL [a-z0-9/-]+: .+)$`)

func TestCheckPassesAgainstEchod(t *testing.T) {
	addrs := startServe(t, 2, "-listen", "127.0.0.1:0", "-listen", "[::1]:0")
	for i, addr := range addrs {
		args := []string{"check", addr}
		if i == 1 {
			// The full suite ran on IPv4; on IPv6 what differs is the path.
			args = []string{"check", "-run", "smoke|streaming|close-after-eof|ipv6", addr}
		}
		code, out, errOut := runCmd(t, nil, args...)
		if code != 0 {
			t.Fatalf("check %s: exit %d\n%s%s", addr, code, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := 11 // the ipv6 check is skipped on IPv4
		if i == 1 {
			want = 4
		}
		if len(lines) != want+1 {
			t.Errorf("check %s: %d lines, want %d checks and a summary:\n%s", addr, len(lines), want, out)
		}
		for _, l := range lines[:len(lines)-1] {
			if !resultLines.MatchString(l) || !strings.HasPrefix(l, "PASS ") {
				t.Errorf("check %s: line %q", addr, l)
			}
		}
		summary := regexp.MustCompile(`^PASS: \d+ checks passed against ` + regexp.QuoteMeta(addr) + `(, 1 skipped)? \(.+\)$`)
		if last := lines[len(lines)-1]; !summary.MatchString(last) {
			t.Errorf("check %s: summary %q", addr, last)
		}
	}
}

func TestCheckProtohackersProfileAgainstEchod(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	code, out, errOut := runCmd(t, nil, "check", "-protohackers", addr)
	want := "A local reconstruction of the Protohackers Smoke Test (problem 0), in the shape of its checker's log:\n" +
		"[0simple.test] NOTE:one short line of text\n" +
		"[0simple.test] PASS\n" +
		"[1empty.test] NOTE:no data at all: half-close, then EOF\n" +
		"[1empty.test] PASS\n" +
		"[2long.test] NOTE:100 KiB of text in several writes\n" +
		"[2long.test] PASS\n" +
		"[3binary.test] NOTE:100 KiB of random binary data in several writes\n" +
		"[3binary.test] PASS\n" +
		"[4clients.test] NOTE:5 clients at once, as in the smoke check: a server that serves one client at a time fails\n" +
		"[4clients.test] PASS\n" +
		"PASS: 5 checks passed against " + addr + " ("
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

func TestCheckJSON(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	code, out, errOut := runCmd(t, nil, "check", "-json", "-v", "-run", "^(text|empty|ipv6)$", addr)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var rep struct {
		Addr                    string
		OK                      bool
		Passed, Failed, Skipped int
		Checks                  []struct{ Name, Status, Reason string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, out)
	}
	if !rep.OK || rep.Passed != 2 || rep.Failed != 0 || rep.Skipped != 1 || len(rep.Checks) != 3 || rep.Addr != addr {
		t.Errorf("report %+v", rep)
	}
	if c := rep.Checks[2]; c.Name != "ipv6" || c.Status != "skip" || c.Reason == "" {
		t.Errorf("ipv6 %+v, want a skip with a reason", c)
	}
	// -v shows progress on stderr, keeping stdout clean.
	if !strings.Contains(errOut, "RUN  text:") || !strings.Contains(errOut, "PASS text (") {
		t.Errorf("stderr %q, want progress", errOut)
	}
}

func TestCheckReportsBrokenServer(t *testing.T) {
	// This server replies only once the client half-closes.
	addr := startBroken(t, func(b []byte) []byte { return b })
	code, out, errOut := runCmd(t, nil, "check", addr, "-patience", "300ms", "-run", "text|streaming")
	want := "PASS text (64 bytes of text)\n" +
		"FAIL streaming: first reply byte came only after half-close: the server buffers until EOF (RFC 862 echoes as data arrives)\n" +
		"FAIL: 1 of 2 checks failed against " + addr
	if code != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("exit %d, stdout\n%s\nwant exit 1 and\n%s", code, out, want)
	}
	if errOut != "" {
		// The summary on stdout said it once.
		t.Errorf("stderr %q, want nothing", errOut)
	}
}

func TestCheckUsage(t *testing.T) {
	closed := testkit.FreeAddr(t, "tcp")
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no address", nil, "no address given"},
		{"bad address", []string{"localhost"}, `invalid address "localhost"`},
		{"two addresses", []string{"127.0.0.1:1", "127.0.0.1:2"}, `unexpected argument "127.0.0.1:2"`},
		{"bad udp address", []string{"-udp-addr", "x", "127.0.0.1:1"}, `invalid -udp-addr "x"`},
		{"bad regexp", []string{"-run", "(", "127.0.0.1:1"}, `invalid -run "("`},
		{"no check matches", []string{"-run", "nope", "127.0.0.1:1"}, `-run "nope" matches no check (there are: smoke, all-bytes`},
		{"negative timeout", []string{"-timeout", "-1s", "127.0.0.1:1"}, "-timeout must not be negative"},
		{"zero patience", []string{"-patience", "0s", "127.0.0.1:1"}, "-patience must be positive"},
		{"nothing listening", []string{closed}, "echod: nothing is listening on " + closed + "\n"},
		{"bad path", []string{"-simulate", "delay=1", "127.0.0.1:1"}, "invalid -simulate: delay=1: time: missing unit in duration"},
		{"path and UDP", []string{"-simulate", "delay=1ms", "-udp", "127.0.0.1:1"}, "-simulate puts one path in front of ADDRESS"},
		{"path to nothing", []string{"-simulate", "delay=1ms", closed}, "echod: nothing is listening on " + closed + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, nil, append([]string{"check"}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) || strings.Count(errOut, "\n") != 1 {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", code, out, errOut, tt.wantErr)
			}
		})
	}
	code, out, _ := runCmd(t, nil, "check", "-h")
	if code != 0 || !strings.Contains(out, "-protohackers") || !strings.Contains(out, "HOST:PORT") {
		t.Errorf("check -h: exit %d, %q", code, out)
	}
}

// Each engine must pass the whole suite.
func TestCheckPassesAgainstEachEngine(t *testing.T) {
	engines := []string{"goroutine", "auto"}
	if runtime.GOOS == "linux" {
		engines = append(engines, "epoll")
	}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			addr := startServe(t, 1, "-engine", engine, "-listen", "127.0.0.1:0")[0]
			code, out, errOut := runCmd(t, nil, "check", addr)
			if code != 0 || !strings.Contains(out, "PASS: 11 checks passed") {
				t.Fatalf("exit %d\n%s%s", code, out, errOut)
			}
		})
	}
}

// A server that accepts and never answers fails by -timeout instead of
// hanging; the checks not reached are reported, not dropped.
func TestCheckTimeoutOnSilentServer(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	addr := startTestServer(t, func(net.Conn) { <-hold })
	code, out, _ := runCmd(t, nil, "check", "-timeout", "300ms", "-run", "^(text|empty)$", addr)
	want := regexp.MustCompile(`(?s)^FAIL text: stopped: .*\nFAIL empty: not run: .*\nFAIL: 2 of 2 checks failed`)
	if code != 1 || !want.MatchString(out) {
		t.Errorf("exit %d, stdout\n%s\nwant exit 1 and output matching %s", code, out, want)
	}
}

// Asked for UDP where only TCP is served, check says so plainly, and how
// to serve UDP, over IPv4 and IPv6.
func TestCheckUDPWhereNoneIsServed(t *testing.T) {
	for _, addr := range startServe(t, 2, "-listen", "127.0.0.1:0", "-listen", "[::1]:0") {
		code, out, _ := runCmd(t, nil, "check", "-udp", "-run", "^udp-sizes$", addr)
		want := "FAIL udp-sizes: nothing is listening on UDP " + addr + " (the port is closed), but TCP echo answers there: start echod serve with -udp\n"
		if code != 1 || !strings.HasPrefix(out, want) {
			t.Errorf("exit %d, stdout\n%s\nwant exit 1 and\n%s", code, out, want)
		}
	}
}

// echod check -udp against echod serve -udp: the UDP suite and the TCP one
// on the same address, over IPv4 and IPv6.
func TestCheckUDPAgainstEchod(t *testing.T) {
	all, _ := startServeAll(t, 4, "-udp", "-listen", "127.0.0.1:0", "-listen", "[::1]:0")
	for i, addr := range all["tcp"] {
		if !slices.Contains(all["udp"], addr) {
			t.Fatalf("UDP listeners %v, want one on %s too", all["udp"], addr)
		}
		biggest := []string{"65507", "65527"}[i]
		code, out, errOut := runCmd(t, nil, "check", "-udp", "-run", "^(udp-.*|text)$", addr)
		want := "PASS text (64 bytes of text)\n" +
			"PASS udp-sizes (8 sizes from 1 to " + biggest + " bytes, each echoed whole)\n" +
			"PASS udp-all-bytes (0x00-0xff up and down in one 512-byte datagram)\n" +
			"PASS udp-one-reply (10 datagrams, one reply each)\n" +
			"PASS: 4 checks passed against " + addr + " ("
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Errorf("exit %d, stdout\n%s\nwant\n%s\nstderr %s", code, out, want, errOut)
		}
	}
}

// tls:// and udp:// check echod's TLS echo and a UDP-only server; -ca
// verifies the certificate, and without it a note says it is not.
func TestCheckTLSAndUDPAddresses(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	all, _ := startServeAll(t, 3, "-udp", "-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	tlsAddr, udpAddr := all["tls"][0], all["udp"][0]

	code, out, errOut := runCmd(t, nil, "check", "tls://"+tlsAddr, "-run", "^(text|streaming|close-after-eof)$")
	if code != 0 || !strings.Contains(out, "PASS: 3 checks passed against tls://"+tlsAddr) {
		t.Errorf("check tls://: exit %d\n%s%s", code, out, errOut)
	}
	if want := "note: not verifying the TLS certificate of " + tlsAddr + " (give -ca FILE to verify it)\n"; errOut != want {
		t.Errorf("check tls://: stderr %q, want %q", errOut, want)
	}
	code, out, errOut = runCmd(t, nil, "check", "-ca", certFile, "tls://localhost:"+portOf(tlsAddr), "-run", "^text$")
	if code != 0 || errOut != "" {
		t.Errorf("check -ca: exit %d\n%s%s", code, out, errOut)
	}
	// Plain TCP against TLS echo names the mistake once.
	code, out, _ = runCmd(t, nil, "check", tlsAddr)
	want := "FAIL smoke: answered with TLS: this looks like a TLS server; check it with tls://" + tlsAddr + "\n" +
		"FAIL: 1 of 1 check failed against " + tlsAddr + ", 11 skipped ("
	if code != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("check on TLS: exit %d, stdout\n%s\nwant\n%s", code, out, want)
	}

	code, out, errOut = runCmd(t, nil, "check", "udp://"+udpAddr)
	if code != 0 || !strings.Contains(out, "PASS: 3 checks passed against UDP "+udpAddr) {
		t.Errorf("check udp://: exit %d\n%s%s", code, out, errOut)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// The address may be HOST PORT, and flags may follow it.
func TestCheckAddressForms(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	host, port, _ := net.SplitHostPort(addr)
	for _, args := range [][]string{
		{"check", host, port, "-run", "^text$"},
		{"check", "-run", "^text$", "tcp://" + addr},
		{"check", addr, "-run", "^text$", "-v"},
	} {
		code, out, errOut := runCmd(t, nil, args...)
		if code != 0 || !strings.Contains(out, "PASS: 1 check passed against "+addr) {
			t.Errorf("%q: exit %d\n%s%s", args, code, out, errOut)
		}
	}
}

func TestCheckHelpListsEveryCheck(t *testing.T) {
	code, out, _ := runCmd(t, nil, "help", "check")
	if code != 0 {
		t.Fatalf("help check: exit %d", code)
	}
	for _, c := range append(append(check.TCPChecks(), check.ProtohackersChecks()...), check.UDPChecks()...) {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.Name) + ` +` + regexp.QuoteMeta(c.Doc) + `$`).MatchString(out) {
			t.Errorf("help check does not list %s with its line", c.Name)
		}
	}
}

// Ctrl-C stops a run with one line and exit status 130, not a FAIL for
// every check left.
func TestCheckInterrupted(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb testkit.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"check", addr, "-v"}, stdio{in: strings.NewReader(""), out: &out, err: &errb})
	}()
	// Cancel once the third check has started.
	testkit.Eventually(20*time.Second, func() bool { return strings.Count(out.String(), "RUN  ") >= 3 })
	cancel()
	err := <-done
	printError(&errb, err)
	if code := exitCode(err); code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	// The checks that finished before the cancel passed; the one running
	// is not reported.
	if want := regexp.MustCompile(`^echod: interrupted after ([2-9]|1[01]) of 12 checks: ([2-9]|1[01]) passed, 0 failed\n$`); !want.MatchString(errb.String()) {
		t.Errorf("stderr %q, want it to match %s", errb.String(), want)
	}
	if strings.Contains(out.String(), "FAIL") {
		t.Errorf("stdout has failures:\n%s", out.String())
	}
}
