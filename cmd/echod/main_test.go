package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The signal tests run this test binary as echod itself.
	if os.Getenv("ECHOD_RUN_MAIN") == "1" {
		// The fd-exhaustion tests run echod with a low open-file limit;
		// lowering the hard limit too stops the runtime raising it again.
		if n, err := strconv.ParseUint(os.Getenv("ECHOD_TEST_NOFILE"), 10, 64); err == nil {
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: n, Max: n}); err != nil {
				fmt.Fprintf(os.Stderr, "setrlimit: %v\n", err)
				os.Exit(3)
			}
		}
		main()
		return
	}
	goleak.VerifyTestMain(m)
}

// runCmd runs echod with args and returns its exit status, stdout and stderr
// as main would produce them.
func runCmd(t *testing.T, stdin io.Reader, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb testkit.Buffer
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	err := run(context.Background(), args, stdio{in: stdin, out: &out, err: &errb})
	printError(&errb, err)
	return exitCode(err), out.String(), errb.String()
}

var listeningAddr = regexp.MustCompile(`msg=listening proto=tcp addr=(\S+)`)

// startServe runs 'echod serve' with args in the background until the test
// ends, and returns the addresses it reports as listening for TCP.
func startServe(t *testing.T, want int, args ...string) []string {
	t.Helper()
	addrs, _ := startServeAll(t, want, args...)
	return addrs["tcp"]
}

// startServeAll runs 'echod serve' with args in the background until the
// test ends, waits for want listeners of any protocol, and returns their
// addresses by protocol and the log.
func startServeAll(t *testing.T, want int, args ...string) (map[string][]string, *testkit.Buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := new(testkit.Buffer)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve"}, args...), stdio{in: strings.NewReader(""), out: io.Discard, err: stderr})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	var addrs map[string][]string
	exited := false
	var err error
	if !testkit.Eventually(10*time.Second, func() bool {
		var n int
		addrs, n = testkit.Listening(stderr.String())
		select {
		case err = <-done:
			exited = true
		default:
		}
		return n == want || exited
	}) {
		t.Fatalf("serve did not report %d listeners:\n%s", want, stderr.String())
	}
	if exited {
		done <- err // for the cleanup above
		t.Fatalf("serve exited early: %v\n%s", err, stderr.String())
	}
	return addrs, stderr
}

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"no command", nil, 2, "", "Usage:"},
		{"help", []string{"help"}, 0, "echod send", ""},
		{"-h", []string{"-h"}, 0, "echod serve", ""},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"serve -h", []string{"serve", "-h"}, 0, "-shutdown-timeout", ""},
		{"unknown flag", []string{"serve", "-bogus"}, 2, "", "flag provided but not defined: -bogus"},
		{"listen without port", []string{"serve", "-listen", "127.0.0.1"}, 2, "", "missing port"},
		{"listen port out of range", []string{"serve", "-listen", ":99999"}, 2, "", `invalid port "99999"`},
		{"listen negative port", []string{"serve", "-listen", "127.0.0.1:-1"}, 2, "", `invalid port "-1"`},
		{"http-listen port out of range", []string{"serve", "-http-listen", "127.0.0.1:65536"}, 2, "", `invalid port "65536"`},
		{"bad log format", []string{"serve", "-log-format", "xml"}, 2, "", `invalid -log-format "xml"`},
		{"bad log level", []string{"serve", "-log-level", "loud"}, 2, "", `invalid -log-level "loud"`},
		{"negative shutdown timeout", []string{"serve", "-shutdown-timeout", "-1s"}, 2, "", "must not be negative"},
		{"bad duration", []string{"serve", "-shutdown-timeout", "soon"}, 2, "", "invalid value \"soon\""},
		{"bad engine", []string{"serve", "-engine", "turbo"}, 2, "", `invalid -engine "turbo": want goroutine, epoll or auto`},
		{"stray argument", []string{"serve", "extra"}, 2, "", `unexpected argument "extra"`},
		{"negative max-conns", []string{"serve", "-max-conns", "-1"}, 2, "", "-max-conns must not be negative, got -1"},
		{"unparsable max-conns", []string{"serve", "-max-conns", "lots"}, 2, "", `invalid value "lots" for flag -max-conns`},
		{"negative max-conns-per-ip", []string{"serve", "-max-conns-per-ip", "-5"}, 2, "", "-max-conns-per-ip must not be negative"},
		{"negative idle timeout", []string{"serve", "-idle-timeout", "-1m"}, 2, "", "-idle-timeout must not be negative"},
		{"unparsable idle timeout", []string{"serve", "-idle-timeout", "5"}, 2, "", `invalid value "5" for flag -idle-timeout`},
		{"negative session duration", []string{"serve", "-max-session-duration", "-1h"}, 2, "", "-max-session-duration must not be negative"},
		{"unparsable session bytes", []string{"serve", "-max-session-bytes", "1GB"}, 2, "", `invalid value "1GB" for flag -max-session-bytes`},
		{"negative session bytes", []string{"serve", "-max-session-bytes", "-1"}, 2, "", "-max-session-bytes must not be negative"},
		{"negative udp source rate", []string{"serve", "-udp-source-rate", "-10"}, 2, "", "-udp-source-rate must not be negative"},
		{"negative udp global rate", []string{"serve", "-udp-global-rate", "-10"}, 2, "", "-udp-global-rate must not be negative"},
		{"udp is a switch", []string{"serve", "-udp=maybe"}, 2, "", `invalid boolean value "maybe" for -udp`},
		{"send bad addr", []string{"send", "-addr", "nowhere", "hi"}, 2, "", `invalid -addr "nowhere"`},
		{"send message without address", []string{"send", "hello"}, 2, "", `send: invalid address "hello": missing port: want HOST:PORT, such as 127.0.0.1:7007`},
		{"send ws, nothing listening", []string{"send", "ws://127.0.0.1:1/echo", "hi"}, 1, "", "echod: nothing is listening on 127.0.0.1:1\n"},
		{"check wss, nothing listening", []string{"check", "wss://127.0.0.1:1"}, 2, "", "nothing is listening on 127.0.0.1:1"},
		{"check ws -udp", []string{"check", "-udp", "ws://127.0.0.1:1/"}, 2, "", "-protohackers, -udp and -udp-addr check TCP and UDP echo, not ws://127.0.0.1:1/"},
		{"send ws -ca", []string{"send", "-ca", "x.pem", "ws://127.0.0.1:1/", "hi"}, 2, "", "-ca applies to tls:// and wss:// addresses, not ws://127.0.0.1:1/"},
		{"version", []string{"version"}, 0, "echod ", ""},
		{"-version", []string{"-version"}, 0, "echod ", ""},
		{"help serve", []string{"help", "serve"}, 0, "-shutdown-timeout", ""},
		{"help send", []string{"help", "send"}, 0, "-verify", ""},
		{"help bench", []string{"help", "bench"}, 0, "-mode", ""},
		{"help nonsense", []string{"help", "nonsense"}, 2, "", `no help for "nonsense"`},
		{"send -h", []string{"send", "-h"}, 0, "-verify", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, nil, tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, errOut)
			}
			if !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout = %q, want it to contain %q", out, tt.wantOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tt.wantErr)
			}
			if strings.Contains(errOut, "goroutine ") || strings.Contains(errOut, "panic") {
				t.Errorf("stderr has a stack trace: %s", errOut)
			}
		})
	}
}

func TestServeReportsPortInUse(t *testing.T) {
	l := testkit.Listen(t)
	code, _, errOut := runCmd(t, nil, "serve", "-listen", l.Addr().String())
	if code != 1 || !strings.Contains(errOut, "address already in use") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q; want exit 1 and one line saying the address is in use", code, errOut)
	}
}

func TestServeOnSeveralAddressesAndSend(t *testing.T) {
	addrs := startServe(t, 2, "-listen", "127.0.0.1:0", "-listen", "[::1]:0")
	for _, addr := range addrs {
		host, port, _ := net.SplitHostPort(addr)
		for _, args := range [][]string{
			{"send", addr, "Ground", "Control", "To", "Major", "Tom"},
			{"send", host, port, "Ground", "Control", "To", "Major", "Tom"},
			{"send", "tcp://" + addr, "-timeout", "5s", "Ground", "Control", "To", "Major", "Tom"},
			{"send", "-addr", addr, "Ground", "Control", "To", "Major", "Tom"}, // the old form
		} {
			code, out, errOut := runCmd(t, nil, args...)
			if code != 0 || out != "Ground Control To Major Tom" {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
			}
		}
	}
}

func TestSendVerifiesBinaryStdin(t *testing.T) {
	for _, engine := range []string{"goroutine", "auto", "epoll"} {
		if engine == "epoll" && runtime.GOOS != "linux" {
			continue
		}
		t.Run(engine, func(t *testing.T) {
			addr := startServe(t, 1, "-listen", "127.0.0.1:0", "-engine", engine)[0]
			input := make([]byte, 5<<20)
			for i := range input {
				input[i] = byte(i * 7)
			}
			code, out, errOut := runCmd(t, bytes.NewReader(input), "send", addr, "-verify")
			if code != 0 || !bytes.Equal([]byte(out), input) {
				t.Fatalf("exit %d, %d bytes back of %d, stderr %q", code, len(out), len(input), errOut)
			}
		})
	}
}

// startBroken serves a deliberately wrong echo, produced by reply from what
// the client sent, once the client half-closes.
func startBroken(t *testing.T, reply func([]byte) []byte) string {
	t.Helper()
	return startTestServer(t, func(c net.Conn) {
		got, _ := io.ReadAll(c)
		c.Write(reply(got))
	})
}

// startTestServer runs handle on its own goroutine for every connection to
// a fresh loopback port, closing each connection when handle returns, until
// the test ends.
func startTestServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	return testkit.Serve(t, testkit.Listen(t), handle)
}

func TestSendVerifyReportsWhereTheReplyDiffers(t *testing.T) {
	tests := []struct {
		name    string
		reply   func([]byte) []byte
		wantErr string
	}{
		{"changed byte", func(b []byte) []byte { b[3] = 'X'; return b }, "byte 3 differs: got 0x58 want 0x6c"},
		{"padded", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, "4096 bytes more than the 11 sent"},
		{"truncated", func(b []byte) []byte { return b[:5] }, "reply is 6 bytes shorter than the 11 sent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startBroken(t, tt.reply)
			code, _, errOut := runCmd(t, nil, "send", addr, "-verify", "hello", "world")
			if code != 1 || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stderr %q; want exit 1 and %q", code, errOut, tt.wantErr)
			}
		})
	}
}

func TestSendTimesOutOnSilentServer(t *testing.T) {
	// This server accepts and then neither answers nor closes.
	hold := make(chan struct{})
	defer close(hold)
	addr := startTestServer(t, func(net.Conn) { <-hold })
	code, _, errOut := runCmd(t, nil, "send", addr, "-timeout", "200ms", "hi")
	if code != 1 || !strings.Contains(errOut, "within 200ms") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and a timeout message", code, errOut)
	}
}

func TestSendToNothingListening(t *testing.T) {
	addr := testkit.FreeAddr(t, "tcp")
	code, _, errOut := runCmd(t, nil, "send", addr, "hi")
	if code != 1 || !strings.Contains(errOut, "nothing is listening on "+addr) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// startProcess runs this test binary as 'echod serve' in its own process and
// returns it with the address it listens on.
func startProcess(t *testing.T, args ...string) (*exec.Cmd, *bufio.Scanner, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "-listen", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "ECHOD_RUN_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if m := listeningAddr.FindStringSubmatch(lines.Text()); m != nil {
			return cmd, lines, m[1]
		}
	}
	t.Fatalf("echod exited without listening: %v", lines.Err())
	return nil, nil, ""
}

// waitLine reads lines until one contains want.
func waitLine(t *testing.T, lines *bufio.Scanner, want string) {
	t.Helper()
	for lines.Scan() {
		if strings.Contains(lines.Text(), want) {
			return
		}
	}
	t.Fatalf("echod's log ended before %q", want)
}

func TestSIGTERMDrainsOpenSessions(t *testing.T) {
	cmd, lines, addr := startProcess(t, "-shutdown-timeout", "30s")
	c := testkit.Dial(t, addr)
	// An echo proves the server has accepted the session before the signal.
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine(t, lines, "shutting down")

	// The open session still echoes during the drain...
	if _, err := c.Write([]byte("still echoing")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "still echoing" {
		t.Fatalf("during drain got %q, %v", got, err)
	}
	// ...and echod exits 0 once it is done, long before the timeout.
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("echod exited with %v, want status 0", err)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	cmd, lines, addr := startProcess(t, "-shutdown-timeout", "60s")
	// A session proven open by an echo: a connection still in the accept
	// queue at the signal would be refused, and the drain over at once.
	holdOpen(t, addr)
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine(t, lines, "shutting down")
	cmd.Process.Signal(syscall.SIGTERM)

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("echod exited with %v after a second signal, want a non-zero exit", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("echod still running 20s after a second SIGTERM, with a session open")
	}
}

// The beginner's command from the issue: the message goes to the address
// given first, not to the default port.
func TestSendAddressFirst(t *testing.T) {
	got := make(chan string, 1)
	addr := startTestServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- string(b)
		c.Write(b)
	})
	code, out, errOut := runCmd(t, nil, "send", addr, "hello")
	if code != 0 || out != "hello" || <-got != "hello" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// A server that echoed everything but never closes is told so, not that
// the echo did not come.
func TestSendToServerThatNeverCloses(t *testing.T) {
	stop := make(chan struct{})
	addr := startTestServer(t, func(c net.Conn) {
		io.Copy(c, c)
		<-stop
	})
	code, out, errOut := runCmd(t, nil, "send", addr, "-patience", "200ms", "hello", "world")
	close(stop)
	want := "echod: the echo was complete (11 bytes) but " + addr + " did not close the connection within 200ms of the half-close: the server should close once the client has half-closed and the echo is sent\n"
	if code != 1 || out != "hello world" || errOut != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, want)
	}
}

func TestSendUDPAndTLS(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	all, _ := startServeAll(t, 3, "-udp", "-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	for _, args := range [][]string{
		{"send", "udp://" + all["udp"][0], "-verify", "one", "datagram"},
		{"send", "tls://" + all["tls"][0], "-verify", "one", "datagram"},
		{"send", "-ca", certFile, "tls://localhost:" + portOf(all["tls"][0]), "-verify", "one", "datagram"},
	} {
		code, out, errOut := runCmd(t, nil, args...)
		if code != 0 || out != "one datagram" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	// Nothing answers UDP on the TCP-only port of a fresh listener.
	closed := testkit.FreeAddr(t, "udp")
	code, _, errOut := runCmd(t, nil, "send", "udp://"+closed, "hi")
	if want := "echod: nothing is listening on udp://" + closed + " (the port is closed)\n"; code != 1 || errOut != want {
		t.Errorf("send to a closed UDP port: exit %d, stderr %q, want %q", code, errOut, want)
	}
}

// Ctrl-C during send exits 130 with one line.
func TestSendInterrupted(t *testing.T) {
	accepted := make(chan struct{})
	stop := make(chan struct{})
	addr := startTestServer(t, func(c net.Conn) {
		close(accepted)
		<-stop
	})
	defer close(stop)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"send", addr, "hi"}, stdio{in: strings.NewReader(""), out: io.Discard, err: io.Discard})
	}()
	<-accepted
	cancel()
	err := <-done
	var errb strings.Builder
	printError(&errb, err)
	if code := exitCode(err); code != 130 || errb.String() != "echod: interrupted: send to "+addr+" stopped\n" {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// send names a server of another protocol instead of printing its answer
// as if it were an echo.
func TestSendNamesOtherProtocols(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(web.Close)
	webAddr := web.Listener.Addr().String()
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	all, _ := startServeAll(t, 2, "-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	plain, tlsAddr := all["tcp"][0], all["tls"][0]
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"send", webAddr, "hello"}, "echod: " + webAddr + " answered with HTTP: this looks like a web server, not an echo server\n"},
		{[]string{"send", tlsAddr, "hello"}, "echod: " + tlsAddr + " closed the connection without a reply, and answers TLS: this looks like a TLS server; send to tls://" + tlsAddr + "\n"},
		{[]string{"send", "-ca", certFile, "tls://" + plain, "hello"}, "echod: tls://" + plain + ": the server echoed the TLS handshake: it is a plain echo server, not TLS; send to " + plain + ", without tls://\n"},
	}
	for _, tt := range tests {
		code, _, errOut := runCmd(t, nil, tt.args...)
		if code != 1 || errOut != tt.want {
			t.Errorf("%q: exit %d, stderr %q; want exit 1 and %q", tt.args, code, errOut, tt.want)
		}
	}
}

// send -verify to a server that closes at its session limit while input
// remains: send ends with the shortfall, it does not wait forever on the
// bytes it kept to verify.
func TestSendVerifyAgainstASessionLimit(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0", "-max-session-bytes", "100000")[0]
	input := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	done := make(chan struct{})
	var code int
	var stderr string
	go func() {
		defer close(done)
		code, _, stderr = runCmd(t, bytes.NewReader(input), "send", "-verify", addr)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("send -verify still running 30s after the server's session limit")
	}
	if code != 1 || !strings.Contains(stderr, "the server closed after 100000 bytes") {
		t.Errorf("exit %d, stderr %q; want 1 and the shortfall", code, stderr)
	}
}
