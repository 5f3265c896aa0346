package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
	"github.com/echod/echod/internal/tooltest"
)

// startTLS serves TLS echo with a fresh certificate and returns the address
// and a client configuration that trusts that certificate.
func startTLS(t *testing.T) (string, *tls.Config) {
	t.Helper()
	addr, cfg, _ := startTLSWith(t)
	return addr, cfg
}

// startTLSWith is startTLS with more serve flags, and the log.
func startTLSWith(t *testing.T, args ...string) (string, *tls.Config, *testkit.Buffer) {
	t.Helper()
	certFile, keyFile, cert := testcert.Write(t, t.TempDir(), "server", "echod test")
	addrs, log := startServeAll(t, 1, append([]string{"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, args...)...)
	if len(addrs["tls"]) != 1 {
		t.Fatalf("listening on %v, want one TLS address", addrs)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return addrs["tls"][0], &tls.Config{RootCAs: roots, ServerName: "localhost"}, log
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// A TLS session is an echo session like any other: everything sent comes
// back exactly, and after the client's close_notify (CloseWrite) the server
// sends what it still holds, then its own close_notify.
func TestTLSEchoesExactlyThroughHalfClose(t *testing.T) {
	addr, cfg := startTLS(t)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, size := range []int{0, 1, 256, 8 << 20} {
			cfg := cfg.Clone()
			cfg.MinVersion, cfg.MaxVersion = version, version
			c := dialTLS(t, addr, cfg)
			// Write and read at once: 8 MiB does not fit in the socket
			// buffers, so writing everything first would deadlock.
			written := make(chan error, 1)
			go func() {
				_, err := io.CopyN(c, pattern.NewStream(uint64(size)), int64(size))
				if err == nil {
					err = c.CloseWrite()
				}
				written <- err
			}()
			v := pattern.NewVerifier(io.LimitReader(pattern.NewStream(uint64(size)), int64(size)))
			_, err := io.Copy(v, c)
			if werr := <-written; werr != nil {
				t.Fatalf("%s, %d bytes: write: %v", tls.VersionName(version), size, werr)
			}
			if err != nil || v.Verified() != int64(size) {
				t.Fatalf("%s, %d bytes: %d verified, %v", tls.VersionName(version), size, v.Verified(), err)
			}
		}
	}
}

func TestTLSEchoesEachPieceAtOnce(t *testing.T) {
	addr, cfg := startTLS(t)
	c := dialTLS(t, addr, cfg)
	for _, msg := range []string{"Ground Control", " to Major Tom", "\x00\xff"} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %q: got %q, %v", msg, got, err)
		}
	}
}

func TestTLSAndPlainTCPSideBySide(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	addrs, _ := startServeAll(t, 2, "-listen", "127.0.0.1:0", "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	if len(addrs["tcp"]) != 1 || len(addrs["tls"]) != 1 {
		t.Fatalf("listening on %v, want one TCP and one TLS address", addrs)
	}
	code, out, errOut := runCmd(t, nil, "send", "-addr", addrs["tcp"][0], "plain")
	if code != 0 || out != "plain" {
		t.Fatalf("plain TCP next to TLS: exit %d, %q, %q", code, out, errOut)
	}
}

func TestServeTLSUsage(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no key", []string{"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile}, 2, "needs both -tls-cert and -tls-key"},
		{"cert without listener", []string{"-tls-cert", certFile, "-tls-key", keyFile}, 2, "need -tls-listen"},
		{"bad address", []string{"-tls-listen", "localhost"}, 2, "missing port"},
		{"missing file", []string{"-tls-listen", "127.0.0.1:0", "-tls-cert", "/nonexistent.crt", "-tls-key", keyFile}, 1, "/nonexistent.crt"},
		{"key for another cert", []string{"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", certFile}, 1, "load TLS certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCmd(t, nil, append([]string{"serve"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line with %q", code, errOut, tt.wantCode, tt.wantErr)
			}
		})
	}
}

// openssl s_client, as people use it against TLS servers. With -quiet it
// ignores the end of its input, so the test reads the echo back and then ends
// the client itself.
func TestTLSWithOpenSSLClient(t *testing.T) {
	openssl := tooltest.Require(t, "openssl")
	addr, _ := startTLS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-quiet")
	input := make([]byte, 64<<10)
	pattern.NewStream(11).Read(input)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	go func() {
		stdin.Write(input)
		// Keep stdin open: an end of input would make some openssl
		// versions hang up before the echo is back.
	}()
	got := make([]byte, len(input))
	if _, err := io.ReadFull(stdout, got); err != nil {
		t.Fatalf("reading the echo from openssl: %v\nstderr: %s", err, stderr.String())
	}
	if !bytes.Equal(got, input) {
		t.Fatalf("openssl got a different echo; first difference at byte %d", pattern.FirstDiff(got, input))
	}
	stdin.Close()
}

var tlsListening = regexp.MustCompile(`msg=listening proto=tls addr=(\S+)`)

// SIGHUP swaps the certificate for new connections; a connection opened
// before it keeps echoing on the old one.
func TestSIGHUPReloadsCertificateWithoutDroppingConnections(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, first := testcert.Write(t, dir, "live", "first")
	nextCert, nextKey, second := testcert.Write(t, dir, "next", "second")
	cmd, lines, _ := startProcess(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	addr := waitMatch(t, lines, tlsListening)
	roots := x509.NewCertPool()
	roots.AddCert(first)
	roots.AddCert(second)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost"}

	old := dialTLS(t, addr, cfg)
	if err := old.Handshake(); err != nil {
		t.Fatal(err)
	}
	if cn := old.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "first" {
		t.Fatalf("before SIGHUP the server presents %q, want first", cn)
	}

	for from, to := range map[string]string{nextCert: certFile, nextKey: keyFile} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine(t, lines, "reloaded the TLS certificate")

	fresh := dialTLS(t, addr, cfg)
	if err := fresh.Handshake(); err != nil {
		t.Fatal(err)
	}
	if cn := fresh.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "second" {
		t.Fatalf("after SIGHUP the server presents %q, want second", cn)
	}
	for _, c := range []*tls.Conn{old, fresh} {
		if _, err := c.Write([]byte("still here")); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "still here" {
			t.Fatalf("after SIGHUP got %q, %v", got, err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("echod exited with %v after SIGHUP and SIGTERM, want status 0", err)
	}
}

// waitMatch reads lines until one matches re and returns its first group.
func waitMatch(t *testing.T, lines *bufio.Scanner, re *regexp.Regexp) string {
	t.Helper()
	for lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			return m[1]
		}
	}
	t.Fatalf("echod's log ended before a line matching %s", re)
	return ""
}

// halfClientHello returns the first half of a real TLS ClientHello.
func halfClientHello(t *testing.T) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		tls.Client(client, &tls.Config{ServerName: "localhost"}).Handshake()
		client.Close()
	}()
	buf := make([]byte, 4096)
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := server.Read(buf)
	if err != nil || n < 10 {
		t.Fatalf("reading a ClientHello: %d bytes, %v", n, err)
	}
	return buf[:n/2]
}

// A handshake that does not finish within -tls-handshake-timeout ends its
// connection, whatever the idle timeout: neither a client that connects and
// sends nothing nor one that stops halfway through its ClientHello holds a
// connection for long, and a valid client is served meanwhile.
func TestTLSHandshakeTimeout(t *testing.T) {
	addr, cfg, log := startTLSWith(t, "-tls-handshake-timeout", "300ms", "-idle-timeout", "1h", "-log-level", "debug")
	tests := []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"half a ClientHello", halfClientHello(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The server's clock starts after this one: at its accept,
			// which may come before a busy machine returns from the dial.
			start := time.Now()
			c := testkit.Dial(t, addr)
			c.Write(tt.send)
			// A valid client is served while this handshake hangs.
			tc := dialTLS(t, addr, cfg)
			tc.Write([]byte("not held up"))
			buf := make([]byte, len("not held up"))
			if _, err := io.ReadFull(tc, buf); err != nil {
				t.Fatalf("valid client beside a hanging handshake: %v", err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(make([]byte, 1))
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the hanging handshake was still open after 10s, with a 300ms handshake timeout")
			}
			if n != 0 || time.Since(start) < 300*time.Millisecond {
				t.Fatalf("read %d bytes, %v after %v; want the connection closed after the handshake timeout", n, err, time.Since(start))
			}
		})
	}
	waitLog(t, log, "reason=tls-handshake-timeout")
}
