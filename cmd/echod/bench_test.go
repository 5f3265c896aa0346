package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

func TestBenchUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no address", []string{"bench"}, "bench: no address given: want HOST:PORT, such as 127.0.0.1:7007"},
		{"two addresses", []string{"bench", "a:1", "b:2"}, `bench: unexpected argument "b:2"`},
		{"ws-type on tcp", []string{"bench", "-ws-type", "text", "127.0.0.1:1"}, "-ws-type applies to ws:// and wss:// addresses, not 127.0.0.1:1"},
		{"ws-type on tls", []string{"bench", "-ws-type", "binary", "tls://127.0.0.1:1"}, "-ws-type applies to ws:// and wss:// addresses, not tls://127.0.0.1:1"},
		{"empty ws-type", []string{"bench", "-ws-type=", "ws://127.0.0.1:1/"}, "-ws-type wants binary, text or alternate"},
		{"bad ws-type", []string{"bench", "-ws-type", "utf8", "ws://127.0.0.1:1/"}, `unknown message type "utf8": want binary, text or alternate`},
		{"ca missing", []string{"bench", "-ca", "/nonexistent/ca.pem", "tls://127.0.0.1:1"}, "-ca: open /nonexistent/ca.pem: no such file or directory"},
		{"ca on ws", []string{"bench", "-ca", "ca.pem", "ws://127.0.0.1:1/"}, "-ca applies to tls:// and wss:// addresses, not ws://127.0.0.1:1/"},
		{"ca and insecure", []string{"bench", "-ca", "ca.pem", "-insecure", "wss://127.0.0.1:1/"}, "-ca verifies the certificate and -insecure does not: give one of them"},
		{"sni on tcp", []string{"bench", "-sni", "example.org", "127.0.0.1:1"}, "-sni applies to tls:// and wss:// addresses, not 127.0.0.1:1"},
		{"udp over ws", []string{"bench", "-mode", "udp", "ws://127.0.0.1:1/"}, "-mode udp is for udp:// addresses; ws://127.0.0.1:1/ takes pingpong, bulk, cycle or idle"},
		{"udp over tls", []string{"bench", "-mode", "udp", "tls://127.0.0.1:1"}, "-mode udp is for udp:// addresses"},
		{"udp with a tcp mode", []string{"bench", "-mode", "bulk", "udp://a:1"}, "-mode bulk is for TCP; udp://a:1 takes -mode udp"},
		{"no port", []string{"bench", "127.0.0.1"}, "invalid address"},
		{"bad mode", []string{"bench", "-mode", "flood", "a:1"}, `unknown mode "flood"`},
		{"depth for bulk", []string{"bench", "-mode", "bulk", "-depth", "4", "a:1"}, "depth applies to pingpong and udp"},
		{"bad source", []string{"bench", "-source", "127.0.0.9-127.0.0.1", "a:1"}, "-source: invalid source range"},
		{"zero timeout", []string{"bench", "-timeout", "0", "a:1"}, "-timeout must be positive"},
		{"negative duration", []string{"bench", "-d", "-1s", "a:1"}, "duration must not be negative"},
		{"rate for cycle", []string{"bench", "-mode", "cycle", "-rate", "100", "a:1"}, "rate applies to pingpong only"},
		{"open ramp", []string{"bench", "-rate", "5:", "a:1"}, `-rate: invalid rate "5:": want N, FROM:TO (a ramp) or N,N,... (steps)`},
		{"zero step", []string{"bench", "-rate", "0,1000", "a:1"}, `-rate: invalid rate "0,1000": each rate must be above 0`},
		{"rate not a number", []string{"bench", "-rate", "abc", "a:1"}, `-rate: invalid rate "abc"`},
		{"rate size under the header", []string{"bench", "-rate", "100", "-size", "8", "a:1"}, "-size 8 is too small for -rate"},
		{"steps with a count", []string{"bench", "-rate", "1,2", "-n", "5", "a:1"}, "-rate 1,2 runs for -d (each step for -d); -n does not apply"},
		{"search a ramp", []string{"bench", "-find-max-rate", "-max-p99", "5ms", "-rate", "1000:2000", "a:1"}, "-find-max-rate finds the rate itself: give -rate a single rate"},
		{"search without a bound", []string{"bench", "-find-max-rate", "a:1"}, "-find-max-rate needs a latency to stay within: give -max-p99"},
		{"search a shard", []string{"bench", "-find-max-rate", "-max-p99", "5ms", "-shard", "0/2", "-c", "2", "a:1"}, "cannot run as a -shard"},
		{"search with a count", []string{"bench", "-find-max-rate", "-max-p99", "5ms", "-n", "100", "a:1"}, "-find-max-rate runs each step for -d; -n does not apply"},
		{"search steps alone", []string{"bench", "-find-max-steps", "3", "a:1"}, "-find-max-steps applies with -find-max-rate only"},
		{"search cycle", []string{"bench", "-find-max-rate", "-max-p99", "5ms", "-mode", "cycle", "a:1"}, "-find-max-rate applies to pingpong only"},
		{"zero conns", []string{"bench", "-c", "0", "a:1"}, "-c must be at least 1"},
		{"zero depth", []string{"bench", "-depth", "0", "a:1"}, "-depth must be at least 1"},
		{"too many conns", []string{"bench", "-c", "2000000", "a:1"}, "connections must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, nil, tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want 2 and one line with %q", code, stderr, tt.want)
			}
		})
	}
	code, stdout, _ := runCmd(t, nil, "bench", "-h")
	if code != 0 || !strings.Contains(stdout, "-source") || !strings.Contains(stdout, "-pid") {
		t.Errorf("bench -h: exit %d\n%s", code, stdout)
	}
}

func TestBenchAgainstEchodServe(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	short := []string{"-d", "200ms", "-warmup", "50ms", "-c", "4"}
	for _, mode := range []string{"pingpong", "bulk", "cycle", "idle"} {
		t.Run(mode, func(t *testing.T) {
			args := append(append([]string{"bench", "-mode", mode}, short...), addr)
			code, stdout, stderr := runCmd(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			if !strings.Contains(stdout, "Mode:") || !strings.Contains(stdout, "Mismatches:") {
				t.Errorf("no report:\n%s", stdout)
			}
		})
	}

	code, stdout, stderr := runCmd(t, nil, append(append([]string{"bench", "-json", "-depth", "4"}, short...), addr)...)
	if code != 0 {
		t.Fatalf("-json: exit %d\n%s", code, stderr)
	}
	var res struct {
		Mode       string
		OpsPerSec  float64 `json:"ops_per_sec"`
		Mismatches int64
		Latency    struct {
			P99 float64 `json:"p99_ns"`
		}
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("-json output: %v\n%s", err, stdout)
	}
	if res.Mode != "pingpong" || res.OpsPerSec <= 0 || res.Latency.P99 <= 0 || res.Mismatches != 0 {
		t.Errorf("-json: %+v", res)
	}
}

// -rate steps and -find-max-rate against echod serve: a row per step, and
// the rate found in -json.
func TestBenchRateStepsAndSearchAgainstEchodServe(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	short := []string{"-d", "200ms", "-warmup", "50ms", "-c", "2"}
	code, stdout, stderr := runCmd(t, nil, append(append([]string{"bench", "-rate", "200,400"}, short...), addr)...)
	if code != 0 || !strings.Contains(stdout, "Steps (2;") || !strings.Contains(stdout, "from actual send") {
		t.Fatalf("steps: exit %d\n%s\n%s", code, stdout, stderr)
	}
	args := append(append([]string{"bench", "-json", "-find-max-rate", "-max-p99", "100ms", "-rate", "100", "-find-max-steps", "3"}, short...), addr)
	code, stdout, stderr = runCmd(t, nil, args...)
	if code != 0 {
		t.Fatalf("-find-max-rate: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res struct {
		Steps  []struct{ Rate float64 }
		Search struct {
			Rate float64 `json:"rate"`
		} `json:"find_max_rate"`
		Schedule struct {
			Behind int64 `json:"behind"`
		}
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("-json output: %v\n%s", err, stdout)
	}
	if len(res.Steps) != 3 || res.Steps[0].Rate != 100 || res.Search.Rate < 100 {
		t.Errorf("search: %+v\n%s", res, stdout)
	}
}

// bench -mode udp against echod's UDP echo, with its rate limits off as a
// benchmark needs them.
func TestBenchUDPAgainstEchodServe(t *testing.T) {
	addrs, _ := startServeAll(t, 1, "-udp-listen", "127.0.0.1:0", "-udp-source-rate", "0", "-udp-global-rate", "0")
	code, stdout, stderr := runCmd(t, nil, "bench", "-mode", "udp", "-c", "2", "-depth", "4", "-d", "200ms", "-warmup", "50ms", "-json", addrs["udp"][0])
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var res struct {
		Ops        int64
		Mismatches int64
		UDP        struct{ Sent int64 }
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("-json output: %v\n%s", err, stdout)
	}
	if res.Ops == 0 || res.UDP.Sent == 0 || res.Mismatches != 0 {
		t.Errorf("udp: %+v", res)
	}
}

// Against echod's default UDP limits, bench points at the rate limit
// instead of leaving a bare loss figure.
func TestBenchUDPSuggestsTheRateLimit(t *testing.T) {
	addrs, _ := startServeAll(t, 1, "-udp-listen", "127.0.0.1:0")
	code, stdout, stderr := runCmd(t, nil, "bench", "udp://"+addrs["udp"][0], "-c", "2", "-depth", "64", "-d", "500ms", "-warmup", "0s")
	want := regexp.MustCompile(`(?m)^  Hint: +\d+% of datagrams were lost while \d+/s came back: the server may be rate-limiting \(echod serve answers at most 1000/s per source address, -udp-source-rate, and 20000/s in all, -udp-global-rate; 0 turns either off\)$`)
	if code != 0 || !want.MatchString(stdout) {
		t.Errorf("exit %d, stdout\n%s\nstderr %s\nwant a line matching %s", code, stdout, stderr, want)
	}
}

// A server that echoes every byte with one bit flipped: bench reports the
// first difference and exits 1.
func TestBenchCatchesACorruptingServer(t *testing.T) {
	addr := startTestServer(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			for i := range n {
				buf[i] ^= 1
			}
			if _, werr := c.Write(buf[:n]); werr != nil || err != nil {
				return
			}
		}
	})
	code, stdout, stderr := runCmd(t, nil, "bench", "-d", "200ms", "-warmup", "0", addr)
	if code != 1 || !strings.Contains(stderr, "differed from what was sent") || !strings.Contains(stderr, "byte 0 differs") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(stdout, "Mismatches:") {
		t.Errorf("no report on stdout:\n%s", stdout)
	}
}

func TestBenchReportsRefusedConnections(t *testing.T) {
	// A socket bound without listening: connects are refused, and no other
	// process on this shared machine can take the port meanwhile.
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	code, stdout, stderr := runCmd(t, nil, "bench", "-d", "200ms", "-warmup", "0", addr)
	if code != 1 || !strings.Contains(stderr, "connection refused") || !strings.Contains(stdout, "connect refused") ||
		!strings.HasSuffix(stderr, ": nothing is listening on "+addr+"\n") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}

// bench at a UDP-only echo server's port without udp:// says so, and bench
// udp:// at a closed port says nothing listens, not "sendmmsg: connection
// refused" alone.
func TestBenchRefusedNamesTheCause(t *testing.T) {
	addrs, _ := startServeAll(t, 1, "-udp-listen", "127.0.0.1:0")
	udp := addrs["udp"][0]
	_, _, stderr := runCmd(t, nil, "bench", "-d", "200ms", "-warmup", "0", udp)
	if want := ": nothing is listening on " + udp + " over TCP, but UDP echo answers there: bench udp://" + udp + "\n"; !strings.HasSuffix(stderr, want) {
		t.Errorf("bench TCP at a UDP-only server: stderr %q, want it to end %q", stderr, want)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	pc.Close()
	code, _, stderr := runCmd(t, nil, "bench", "-d", "200ms", "-warmup", "0", "udp://"+closed)
	if want := ": nothing is listening on udp://" + closed + " (the port is closed)\n"; code != 1 || !strings.HasSuffix(stderr, want) {
		t.Errorf("bench udp:// at a closed port: exit %d, stderr %q, want it to end %q", code, stderr, want)
	}
}

// Against echod's own per-IP connection limit, bench and check both say
// that the resets look like a connection limit.
func TestToolsNameTheConnectionLimit(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0", "-max-conns-per-ip", "2")[0]
	code, stdout, _ := runCmd(t, nil, "check", addr, "-run", "many-clients")
	// The server may still count the connection of check's first probe
	// as open when the 200 clients come.
	wantLine := regexp.MustCompile(`^FAIL many-clients: (2 of 200 clients connected at once got their echo; the other 198|1 of 200 clients connected at once got their echo; the other 199) were closed or reset without a reply: this looks like a per-IP connection limit of [12] \(echod serve's -max-conns-per-ip does this\)\n`)
	if code != 1 || !wantLine.MatchString(stdout) {
		t.Errorf("check: exit %d, stdout\n%s\nwant exit 1 and a line matching %s", code, stdout, wantLine)
	}
	code, stdout, _ = runCmd(t, nil, "bench", addr, "-c", "4", "-d", "300ms", "-warmup", "0s")
	want := regexp.MustCompile(`(?m)^  Hint: +\d+ connections were reset or closed by the server while others were served: this looks like a connection limit \(echod serve's -max-conns-per-ip or -max-conns\)$`)
	if code != 1 || !want.MatchString(stdout) {
		t.Errorf("bench: exit %d, stdout\n%s\nwant exit 1 and a line matching %s", code, stdout, want)
	}
}

// Ctrl-C during bench shows the figures so far and exits 130.
func TestBenchInterrupted(t *testing.T) {
	connected := make(chan struct{}, 1)
	addr := startTestServer(t, func(c net.Conn) {
		select {
		case connected <- struct{}{}:
		default:
		}
		io.Copy(c, c)
	})
	ctx, cancel := context.WithCancel(context.Background())
	var out testkit.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"bench", addr, "-d", "1m", "-warmup", "0s"}, stdio{in: strings.NewReader(""), out: &out, err: io.Discard})
	}()
	<-connected
	cancel()
	err := <-done
	var errb strings.Builder
	printError(&errb, err)
	if code := exitCode(err); code != 130 || !regexp.MustCompile(`^echod: interrupted: bench stopped after \d+\.\ds of measuring\n$`).MatchString(errb.String()) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "Interrupted:") {
		t.Errorf("stdout has no Interrupted row:\n%s", out.String())
	}
}

// Every mode but udp runs over tls://, ws:// and wss:// against echod
// serve's TLS echo and web echo, every byte verified, none wrong; the
// certificate verified with -ca.
func TestBenchOverTLSAndWebSocket(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	addrs, _ := startServeAll(t, 3, "-tls-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-https-listen", "127.0.0.1:0",
		"-tls-cert", certFile, "-tls-key", keyFile)
	targets := []struct {
		url   string
		flags []string
	}{
		{"tls://" + addrs["tls"][0], []string{"-ca", certFile}},
		{"ws://" + addrs["http"][0] + "/", []string{"-ws-type", "alternate"}},
		{"wss://" + addrs["https"][0] + "/", []string{"-ca", certFile, "-sni", "localhost", "-ws-type", "text"}},
	}
	for _, tg := range targets {
		for _, mode := range []string{"pingpong", "bulk", "cycle", "idle"} {
			t.Run(tg.url+" "+mode, func(t *testing.T) {
				args := append([]string{"bench", "-json", "-mode", mode, "-d", "200ms", "-warmup", "50ms", "-c", "4"}, tg.flags...)
				code, stdout, stderr := runCmd(t, nil, append(args, tg.url)...)
				if code != 0 || stderr != "" {
					t.Fatalf("exit %d, stderr %q\n%s", code, stderr, stdout)
				}
				var res struct {
					URL        string
					Ops        int64
					Errors     int64
					Mismatches int64
				}
				if err := json.Unmarshal([]byte(stdout), &res); err != nil {
					t.Fatalf("-json output: %v\n%s", err, stdout)
				}
				if res.URL != tg.url || res.Ops == 0 || res.Errors != 0 || res.Mismatches != 0 {
					t.Errorf("%+v", res)
				}
			})
		}
	}
	// Without -ca the run goes on, unverified, and says so.
	code, _, stderr := runCmd(t, nil, "bench", "-d", "100ms", "-warmup", "0", "tls://"+addrs["tls"][0])
	if code != 0 || !strings.HasPrefix(stderr, "note: not verifying the TLS certificate") {
		t.Errorf("without -ca: exit %d, stderr %q", code, stderr)
	}
	// TLS echo benched as plain TCP: the server closes each connection
	// on the bytes it cannot read as TLS, and bench names the URL to use.
	code, _, stderr = runCmd(t, nil, "bench", "-d", "100ms", "-warmup", "0", addrs["tls"][0])
	if want := "and it speaks TLS: bench tls://" + addrs["tls"][0] + "\n"; code != 1 || !strings.HasSuffix(stderr, want) {
		t.Errorf("TLS as TCP: exit %d, stderr %q; want it to end %q", code, stderr, want)
	}
	// A certificate that does not verify fails every connect, and the
	// error names the TLS handshake.
	code, stdout, stderr := runCmd(t, nil, "bench", "-d", "100ms", "-warmup", "0", "-ca", certFile, "-sni", "example.org", "wss://"+addrs["https"][0]+"/")
	if code != 1 || !regexp.MustCompile(`Errors: +\d+ \(tls handshake \d+\)`).MatchString(stdout) || !strings.Contains(stderr, "certificate is valid for localhost, not example.org") {
		t.Errorf("wrong -sni: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
