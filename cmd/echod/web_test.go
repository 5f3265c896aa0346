package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/check"
	"github.com/echod/echod/daemon"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
	"github.com/echod/echod/web"
)

var (
	listeningHTTP  = regexp.MustCompile(`msg=listening proto=http addr=(\S+)$`)
	listeningHTTPS = regexp.MustCompile(`msg=listening proto=https addr=(\S+)`)
)

// dialWS opens a WebSocket to url with a client of its own, closed at the
// end of the test.
func dialWS(t *testing.T, url string, tlsConfig *tls.Config) (*websocket.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &http.Transport{TLSClientConfig: tlsConfig}
	t.Cleanup(tr.CloseIdleConnections)
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, nil
}

// wsRoundTrip sends msg and returns the echo.
func wsRoundTrip(t *testing.T, c *websocket.Conn, msg string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return "", err
	}
	_, got, err := c.Read(ctx)
	return string(got), err
}

// getJSON asks for the request echo of url.
func getJSON(t *testing.T, url string, tlsConfig *tls.Config) (web.Request, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return web.Request{}, err
	}
	defer resp.Body.Close()
	var e web.Request
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return web.Request{}, fmt.Errorf("%s: not a JSON echo: %w", url, err)
	}
	return e, nil
}

// The commands of the README's "Web echo" section: serve -http-listen
// alone serves the web echo and nothing else; curl gets the JSON; check
// passes; send echoes.
func TestServeWebEcho(t *testing.T) {
	byProto, _ := startServeAll(t, 1, "-http-listen", "127.0.0.1:0")
	if len(byProto["http"]) != 1 || len(byProto["tcp"]) != 0 {
		t.Fatalf("listening on %v, want one http address and no TCP echo", byProto)
	}
	addr := byProto["http"][0]

	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("http://"+addr+"/x?y=1", "application/x-www-form-urlencoded", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	var e web.Request
	err = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if err != nil || e.Body != "hello" || e.Path != "/x" || e.Query["y"][0] != "1" {
		t.Fatalf("curl -sd hello %s/x?y=1: %+v, %v", addr, e, err)
	}

	code, out, errOut := runCmd(t, strings.NewReader("héllo\n"), "send", "-verify", "ws://"+addr+"/")
	if code != 0 || out != "héllo\n" {
		t.Errorf("echod send ws://%s/: exit %d, %q, %s", addr, code, out, errOut)
	}
	code, out, errOut = runCmd(t, nil, "send", "ws://"+addr+"/x", "two", "words")
	if code != 0 || out != "two words" {
		t.Errorf("echod send ws://%s/x two words: exit %d, %q, %s", addr, code, out, errOut)
	}
	code, out, errOut = runCmd(t, nil, "check", "ws://"+addr+"/")
	if code != 0 || !strings.Contains(out, "PASS ws-close (") || !strings.Contains(out, "PASS: 7 checks passed against ws://"+addr+"/ (") {
		t.Errorf("echod check ws://%s/: exit %d\n%s%s", addr, code, out, errOut)
	}
	code, out, _ = runCmd(t, nil, "check", "-json", "-run", "ws-text", "ws://"+addr+"/")
	var rep struct {
		URL    string `json:"url"`
		OK     bool   `json:"ok"`
		Passed int    `json:"passed"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.OK || rep.Passed != 1 || rep.URL != "ws://"+addr+"/" {
		t.Errorf("echod check -json -run ws-text: exit %d, %+v, %v\n%s", code, rep, err, out)
	}
}

// echod check ws:// against a server that is not WebSocket: one line
// that says so, exit 1.
func TestCheckWebSocketAgainstTCPEcho(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	code, out, errOut := runCmd(t, nil, "check", "-patience", "1s", "ws://"+addr+"/")
	if code != 1 || out != "" || errOut != "echod: the server sent the WebSocket upgrade request straight back: it is a plain echo server, not WebSocket; check it as "+addr+"\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestServeWebUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-https-listen", "127.0.0.1:0"}, "-https-listen needs both -tls-cert and -tls-key"},
		{[]string{"-http-listen", "127.0.0.1"}, "want HOST:PORT"},
		{[]string{"-http-listen", "127.0.0.1:0", "-ws-max-message", "0"}, "-ws-max-message must be at least 1 byte, got 0"},
		{[]string{"-http-listen", "127.0.0.1:0", "-http-max-body", "-5"}, "-http-max-body must be at least 1 byte, got -5"},
		{[]string{"-http-listen", "127.0.0.1:0", "-http-body-memory", "0"}, "-http-body-memory must be at least 1 byte, got 0"},
		{[]string{"-http-listen", "127.0.0.1:0", "-http-max-requests-per-ip", "-1"}, "-http-max-requests-per-ip must not be negative, got -1 (0 means no limit)"},
		{[]string{"-http-listen", "127.0.0.1:0", "-http-max-body", "9223372036854775807"}, "-http-max-body must be at most 1073741824 (1 GiB), got 9223372036854775807: the body is held in memory"},
	} {
		code, _, stderr := runCmd(t, nil, append([]string{"serve"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("serve %v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestServeWebSocketMaxMessageAndIdleTimeout(t *testing.T) {
	byProto, _ := startServeAll(t, 2, "-http-listen", "127.0.0.1:0", "-ws-max-message", "100", "-idle-timeout", "1s", "-admin", "127.0.0.1:0")
	var addr, admin string
	for _, a := range byProto["http"] {
		// The admin listener logs proto=http too; it answers /metrics.
		if resp, err := http.Get("http://" + a + "/metrics"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "echod_ready") {
				admin = a
				continue
			}
		}
		addr = a
	}
	http.DefaultClient.CloseIdleConnections()
	if addr == "" || admin == "" {
		t.Fatalf("listening on %v: want the web echo and the admin", byProto)
	}

	c, err := dialWS(t, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := wsRoundTrip(t, c, strings.Repeat("a", 100)); err != nil || len(got) != 100 {
		t.Fatalf("100 bytes: %d back, %v", len(got), err)
	}
	if _, err := wsRoundTrip(t, c, strings.Repeat("a", 101)); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("101 bytes over -ws-max-message 100: %v, want close 1009", err)
	}

	idle, err := dialWS(t, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = idle.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "idle timeout" {
		t.Fatalf("idle WebSocket: %v, want close 1001 idle timeout", err)
	}

	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	for _, want := range []string{
		"echod_websocket_messages_total 1\n",
		"echod_websocket_connections_total 2\n",
		`echod_rejected_total{reason="ws-max-message"} 1` + "\n",
		`echod_bytes_total{proto="websocket",direction="in"} 100` + "\n",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// The web echo's connections share -max-conns with TCP echo, on both
// engines: with a TCP session and a WebSocket open, a third of either kind
// is refused, and a place freed is a place for either.
func TestServeWebSharesConnectionLimits(t *testing.T) {
	for _, engine := range []string{"goroutine", "epoll"} {
		t.Run(engine, func(t *testing.T) {
			byProto, log := startServeAll(t, 2, "-engine", engine, "-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-max-conns", "2")
			tcpAddr, httpAddr := byProto["tcp"][0], byProto["http"][0]
			tcp := dialEcho(t, tcpAddr)
			ws, err := dialWS(t, "ws://"+httpAddr+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := wsRoundTrip(t, ws, "held"); err != nil {
				t.Fatal(err)
			}
			if !refused(tcpAddr) {
				t.Error("a third connection, to TCP echo, was served")
			}
			if _, err := getJSON(t, "http://"+httpAddr+"/", nil); err == nil {
				t.Error("a third connection, to the web echo, was served")
			}
			waitLog(t, log, "max-conns")
			ws.Close(websocket.StatusNormalClosure, "")
			testkit.WaitFor(t, "the WebSocket's place is free for an HTTP request", func() bool {
				_, err := getJSON(t, "http://"+httpAddr+"/", nil)
				return err == nil
			})
			echoOn(t, tcp, "still echoing")
		})
	}
}

// -max-conns-per-ip counts web connections by the client's address too.
func TestServeWebMaxConnsPerIP(t *testing.T) {
	byProto, log := startServeAll(t, 1, "-http-listen", "127.0.0.1:0", "-max-conns-per-ip", "1")
	addr := byProto["http"][0]
	ws, err := dialWS(t, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wsRoundTrip(t, ws, "held"); err != nil {
		t.Fatal(err)
	}
	if _, err := getJSON(t, "http://"+addr+"/", nil); err == nil {
		t.Error("a second connection from 127.0.0.1 was served, over -max-conns-per-ip 1")
	}
	waitLog(t, log, "max-conns-per-ip")
	if got, err := wsRoundTrip(t, ws, "still held"); err != nil || got != "still held" {
		t.Errorf("the first connection after the refusal: %q, %v", got, err)
	}
}

// Over HTTPS the web echo speaks HTTP/2 to those who offer it, WebSocket
// over HTTP/1.1, and reports the TLS it sees, a client certificate
// included.
func TestServeHTTPS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, cert := testcert.Write(t, dir, "server", "echod test")
	clientCert, clientKey, _ := testcert.Write(t, dir, "client", "echod test client")
	byProto, _ := startServeAll(t, 1, "-https-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	addr := byProto["https"][0]
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{pair}}

	e, err := getJSON(t, "https://"+addr+"/x", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if e.Protocol != "HTTP/2.0" || e.TLS == nil || e.TLS.ALPN != "h2" || e.TLS.SNI != "localhost" || e.TLS.ClientCertSubject != "CN=echod test client" {
		t.Fatalf("over HTTPS: protocol %s, TLS %+v", e.Protocol, e.TLS)
	}
	rep, err := check.Run(context.Background(), check.Config{URL: "wss://" + addr + "/", TLS: cfg})
	if err != nil || !rep.OK() {
		t.Fatalf("check wss://%s/: %v %+v", addr, err, rep.Results)
	}
}

// A SIGHUP reloads the certificate of HTTPS as of TLS echo.
func TestSIGHUPReloadsTheHTTPSCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testcert.Write(t, dir, "server", "first")
	cmd, lines, _ := startProcess(t, "-https-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	addr := waitMatch(t, lines, listeningHTTPS)
	subject := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := subject(); got != "first" {
		t.Fatalf("certificate %q, want first", got)
	}
	testcert.Write(t, dir, "server", "second")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine(t, lines, "reloaded the TLS certificate")
	if got := subject(); got != "second" {
		t.Fatalf("after SIGHUP: certificate %q, want second", got)
	}
}

// A drain sends every open WebSocket a close frame (1001) and waits for the
// handshake; echod then exits 0.
func TestSIGTERMClosesWebSockets(t *testing.T) {
	cmd, lines, _ := startProcess(t, "-http-listen", "127.0.0.1:0", "-shutdown-timeout", "30s")
	addr := waitMatch(t, lines, listeningHTTP)
	c, err := dialWS(t, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wsRoundTrip(t, c, "before the drain"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "server shutting down" {
		t.Fatalf("during the drain: %v, want close 1001 server shutting down", err)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("echod exited with %v, want status 0", err)
	}
}

// Behind a proxy speaking the PROXY protocol, the echo reports the client
// the header names, and X-Forwarded-For as sent.
func TestServeWebBehindPROXYProtocol(t *testing.T) {
	byProto, _ := startServeAll(t, 1, "-http-listen", "127.0.0.1:0", "-proxy-protocol")
	c := testkit.Dial(t, byProto["http"][0])
	fmt.Fprint(c, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n")
	fmt.Fprint(c, "GET /behind HTTP/1.1\r\nHost: echo.example\r\nX-Forwarded-For: 198.51.100.1\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e web.Request
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Client != "203.0.113.7:40000" || len(e.XForwardedFor) != 1 || e.XForwardedFor[0] != "198.51.100.1" {
		t.Fatalf("client %q, X-Forwarded-For %q; want 203.0.113.7:40000 and the header as sent", e.Client, e.XForwardedFor)
	}
}

// A socket named "http" (FileDescriptorName=http) serves the web echo.
func TestSocketActivationServesWebEchoOnSocketNamedHTTP(t *testing.T) {
	_, lines, addr := startActivated(t, []string{"--fdname=" + daemon.HTTPSocketName}, nil)
	e, err := getJSON(t, "http://"+addr+"/activated", nil)
	if err != nil || e.Path != "/activated" {
		t.Fatalf("request echo through the inherited socket: %+v, %v", e, err)
	}
	waitLine(t, lines, "msg=listening proto=http addr="+addr)
	c, err := dialWS(t, "ws://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := wsRoundTrip(t, c, "activated"); err != nil || got != "activated" {
		t.Fatalf("WebSocket echo through the inherited socket: %q, %v", got, err)
	}
}

// Behind a proxy, a WebSocket's PROXY header, its upgrade request and its
// first frame may arrive in one segment: on either engine the frame is
// echoed, and the log names the client the header gives, not the proxy.
func TestServeWebSocketBehindProxyProtocol(t *testing.T) {
	for _, engine := range []string{"goroutine", "epoll"} {
		t.Run(engine, func(t *testing.T) {
			byProto, log := startServeAll(t, 1, "-engine", engine, "-http-listen", "127.0.0.1:0",
				"-proxy-protocol", "-log-level", "debug")
			addr := byProto["http"][0]
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			// Text "early", masked with a zero key, right behind the request.
			fmt.Fprintf(c, "PROXY TCP4 198.51.100.7 127.0.0.1 40001 80\r\n"+
				"GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"+
				"\x81\x85\x00\x00\x00\x00early", addr)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			got := make([]byte, 7)
			if _, err := io.ReadFull(br, got); err != nil || string(got) != "\x81\x05early" {
				t.Fatalf("echo % x, %v; want the text frame early", got, err)
			}
			c.Write([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8}) // close 1000
			if _, err := io.ReadFull(br, got[:4]); err != nil || string(got[:4]) != "\x88\x02\x03\xe8" {
				t.Fatalf("close answered with % x, %v; want 1000", got[:4], err)
			}
			c.Close()
			if engine == "epoll" {
				// Served by the echo server, which logs each connection.
				waitLog(t, log, "remote=198.51.100.7:40001")
			}
		})
	}
}
