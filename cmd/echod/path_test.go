package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
	"github.com/echod/echod/netpath"
	"github.com/echod/echod/web"
)

// TestPathThroughSimulatedPaths runs 'echod path' against 'echod serve'
// through each of the simulated paths (their times scaled down),
// and checks that each finding names what the path does.
func TestPathThroughSimulatedPaths(t *testing.T) {
	byProto, _ := startServeAll(t, 2, "-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0")
	echo, info := byProto["tcp"][0], "http://"+byProto["http"][0]+netpath.InfoPath
	for _, tc := range []struct {
		name string
		path netsim.Path
		args []string
		want []string // regular expressions the output must match
	}{
		{"far and slow", netsim.Path{Delay: 30 * time.Millisecond, Jitter: 6 * time.Millisecond, Rate: 1_000_000, Segment: 536}, nil, []string{
			`round trip: +min [56]\dms, p50 \d+ms`,
			`throughput: +(0\.(7[5-9]|[89]\d)|1\.[01]\d|1\.2[0-5]) MB/s `,
			`limit: +a shared limit`,
			`segments: +the echo arrived in segments of at most 536 bytes`,
			`half-close: +arrives as a half-close`,
			`tampering: +none`,
			`echod sees: +this client as 127\.0\.0\.1:\d+, its own address`,
		}},
		{"half-close turned into close", netsim.Path{CloseOnHalfClose: true}, nil, []string{
			`half-close: +the connection was closed at the half-close: 0 bytes of 16 KiB in flight came back`,
		}},
		{"idle connections closed after 2s", netsim.Path{IdleTimeout: 2 * time.Second}, []string{"-max-idle", "4s"}, []string{
			`idle: +an idle connection is closed after 2(\.[0-4])?s idle, unasked, by the server or something on the path \(probes: 1\.1s echoed, 2\.2s closed, 4s (closed|cancelled)\)`,
		}},
		{"a byte changed", netsim.Path{Tamper: netsim.Tamper{Kind: netsim.Flip, At: 1000}}, []string{"-n", "1"}, []string{
			`tampering: +1 byte changed in an echo of 128 KiB, the first at byte 1000`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := netsim.Start(context.Background(), echo, tc.path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			args := append([]string{"path", p.Addr(), "-d", "800ms", "-n", "10", "-bulk", "131072", "-max-idle", "0", "-info", info}, tc.args...)
			code, out, errOut := runCmd(t, nil, args...)
			t.Logf("echod %s\n%s", strings.Join(args[1:], " "), out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output does not match %q", w)
				}
			}
		})
	}
}

func TestPathJSON(t *testing.T) {
	echo := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	// -info at the echo port, a beginner's mistake, is told in words.
	code, out, errOut := runCmd(t, nil, "path", "-json", "-d", "200ms", "-n", "3", "-max-idle", "0", "-info", "http://"+echo+"/", echo)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r netpath.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, out)
	}
	if r.RTT == nil || r.RTT.Echoes != 3 || r.HalfClose == nil || r.HalfClose.Outcome != "half-close" || len(r.Findings) == 0 {
		t.Errorf("report %s", out)
	}
	if r.Server == nil || !strings.Contains(r.Server.Err, "it does not answer in HTTP (an echo port sends the request straight back)") {
		t.Errorf("-info at an echo port: %+v", r.Server)
	}
}

func TestPathUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"path"}, "no address given"},
		{[]string{"path", "127.0.0.1:1", "-max-idle", "-1s"}, "-max-idle must not be negative"},
		{[]string{"path", "127.0.0.1:1", "-max-idle", "10ms"}, "-max-idle must be at least 1s"},
		{[]string{"path", "127.0.0.1:1", "-d", "0"}, "-d must be from 100ms to 1h"},
		{[]string{"path", "127.0.0.1:1", "-n", "0"}, "-n must be from 1 to 100000"},
		{[]string{"path", "127.0.0.1:1", "-bulk", "1000000000"}, "-bulk must be from 1 to 67108864 bytes"},
		{[]string{"path", "127.0.0.1:1", "-max-idle", "1h"}, "-max-idle 1h0m0s would not finish within -timeout 10m0s"},
		{[]string{"path", "127.0.0.1:1", "-info", "ws://x/"}, "invalid -info"},
		{[]string{"path", "127.0.0.1:1", "-ca", "x.pem"}, "-ca applies to tls:// and wss://"},
		{[]string{"path", "127.0.0.1:1", "extra"}, `unexpected argument "extra"`},
		{[]string{"path", "127.0.0.1:1", "-simulate", "delay=1"}, "invalid -simulate: delay=1: time: missing unit in duration"},
		{[]string{"path", "127.0.0.1:1", "-simulate", "delay=1s"}, "unreachable: connect to 127.0.0.1:1"},
		{[]string{"path", "-patience", "300ms", "-max-idle", "0", "127.0.0.1:1"}, "unreachable: connect to 127.0.0.1:1"},
	} {
		code, _, errOut := runCmd(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("echod %s: exit %d, %q; want 2 and one line with %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// TLS and WebSocket targets: the handshake and certificate are reported,
// and a ws:// or wss:// target asks the same server what echod sees.
func TestPathTLSAndWebSocket(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod path test")
	byProto, _ := startServeAll(t, 3, "-tls-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-https-listen", "127.0.0.1:0",
		"-tls-cert", certFile, "-tls-key", keyFile)
	for _, tc := range []struct {
		addr string
		want []string
	}{
		{"tls://" + byProto["tls"][0], []string{
			`tls: +TLS 1\.3, TLS_\w+, ALPN none; handshake`,
			`certificate: 1\. CN=echod path test, issued by CN=echod path test, expires \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in 2[34] hours\)\n`,
			`half-close: +arrives as a half-close`,
		}},
		{"ws://" + byProto["http"][0] + "/", []string{
			`connect: +\S+ to a WebSocket`,
			`echod sees: +this client as 127\.0\.0\.1:\d+, its own address`,
			`tampering: +none`,
			`half-close: +not measured: a WebSocket has no half-close`,
		}},
		{"wss://" + byProto["https"][0] + "/", []string{
			`tls: +TLS 1\.3, TLS_\w+, ALPN http/1\.1`,
			`echod sees: +this client as 127\.0\.0\.1:\d+, its own address`,
		}},
	} {
		t.Run(tc.addr[:strings.Index(tc.addr, ":")], func(t *testing.T) {
			args := []string{"path", tc.addr, "-d", "200ms", "-n", "3", "-bulk", "65536", "-max-idle", "0"}
			if strings.HasPrefix(tc.addr, "tls") || strings.HasPrefix(tc.addr, "wss") {
				args = append(args, "-ca", certFile)
			}
			code, out, errOut := runCmd(t, nil, args...)
			t.Logf("echod %s\n%s", strings.Join(args[1:], " "), out)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, w := range tc.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output does not match %q", w)
				}
			}
		})
	}
}

// -simulate puts the proxy in front of the server, for trying what a path
// does without one.
func TestPathSimulate(t *testing.T) {
	echo := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	code, out, errOut := runCmd(t, nil, "path", echo, "-simulate", "delay=20ms,half-close=close", "-d", "200ms", "-n", "5", "-bulk", "65536", "-max-idle", "0")
	t.Log(out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, w := range []string{
		`^simulating delay=20ms,half-close=close: an in-process proxy at 127\.0\.0\.1:\d+ in front of ` + regexp.QuoteMeta(echo) + `\n`,
		`round trip: +min [45]\dms`,
		`half-close: +the connection was closed at the half-close`,
	} {
		if !regexp.MustCompile(w).MatchString(out) {
			t.Errorf("output does not match %q", w)
		}
	}
}

// A server that accepts and never writes is told so on the first line
// after connect, at once, and path exits 1 without measuring the rest.
func TestPathServerThatNeverWrites(t *testing.T) {
	addr := startTestServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	start := time.Now()
	code, out, errOut := runCmd(t, nil, "path", addr, "-patience", "500ms", "-max-idle", "5s")
	t.Log(out)
	if code != 1 || errOut != "" {
		t.Errorf("exit %d, stderr %q; want 1 and nothing more", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], "round trip: no echo: echo 1 of 32 bytes: no reply within 500ms: the server does not echo") {
		t.Errorf("output:\n%s\nwant the path, connect, then no echo", out)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("took %v: the idle probes should stop with no echo", took)
	}
}

// Behind a proxy that sends the PROXY protocol, the connection info gives
// the client the header names and the proxy as the peer.
func TestConnectionInfoBehindPROXY(t *testing.T) {
	byProto, _ := startServeAll(t, 1, "-http-listen", "127.0.0.1:0", "-proxy-protocol")
	c := testkit.Dial(t, byProto["http"][0])
	fmt.Fprintf(c, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 80\r\nGET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", netpath.InfoPath)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ci web.ConnInfo
	if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
		t.Fatal(err)
	}
	if ci.Client != "203.0.113.7:5555" || ci.Peer != c.LocalAddr().String() {
		t.Errorf("info %+v, want client 203.0.113.7:5555 from peer %s", ci, c.LocalAddr())
	}
	if runtime.GOOS == "linux" && ci.TCP == nil {
		t.Error("no TCP view on Linux under the PROXY protocol: the wrappers hide the socket")
	}
}
