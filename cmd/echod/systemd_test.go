package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/echod/echod/daemon"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
	"github.com/echod/echod/internal/tooltest"
)

// startActivated runs this test binary as echod under systemd-socket-activate
// on a free loopback port, with activateArgs for the activator and echodArgs
// after 'echod serve'. It returns the process, its log (the activator's and
// echod's) and the address.
func startActivated(t *testing.T, activateArgs, echodArgs []string) (*exec.Cmd, *bufio.Scanner, string) {
	t.Helper()
	activate := tooltest.Require(t, "systemd-socket-activate")
	// systemd-socket-activate cannot pick a free port itself; take one that
	// was free a moment ago, and try again if someone else took it since.
	for attempt := 0; ; attempt++ {
		addr := testkit.FreeAddr(t, "tcp")
		args := append([]string{"-l", addr, "-E", "ECHOD_RUN_MAIN=1"}, activateArgs...)
		args = append(args, os.Args[0], "serve")
		cmd := exec.Command(activate, append(args, echodArgs...)...)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(stderr)
		var seen []string
		for lines.Scan() {
			seen = append(seen, lines.Text())
			if strings.HasPrefix(lines.Text(), "Listening on ") {
				t.Cleanup(func() {
					cmd.Process.Kill()
					cmd.Wait()
				})
				return cmd, lines, addr
			}
		}
		cmd.Wait()
		if attempt == 5 || !strings.Contains(strings.Join(seen, "\n"), "in use") {
			t.Fatalf("systemd-socket-activate did not listen on %s:\n%s", addr, strings.Join(seen, "\n"))
		}
	}
}

// Under socket activation echod serves the socket it is handed, not -listen,
// and stops gracefully on SIGTERM like any other time.
func TestSocketActivationServesInheritedTCPSocket(t *testing.T) {
	cmd, lines, addr := startActivated(t, nil, []string{"-listen", "127.0.0.1:1"})
	// systemd-socket-activate starts echod on the first connection, which
	// waits in the socket's queue meanwhile.
	c := testkit.Dial(t, addr)
	c.Write([]byte("activated"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "activated" {
		t.Fatalf("echo through the inherited socket: %q, %v", got, err)
	}
	waitLine(t, lines, "ignoring -listen")
	waitLine(t, lines, "msg=listening proto=tcp addr="+addr)
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine(t, lines, "msg=stopped")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("echod exited with %v after SIGTERM, want status 0", err)
	}
}

// A socket named "tls" (FileDescriptorName=tls in the socket unit) serves TLS.
func TestSocketActivationServesTLSOnSocketNamedTLS(t *testing.T) {
	certFile, keyFile, cert := testcert.Write(t, t.TempDir(), "server", "echod test")
	_, lines, addr := startActivated(t, []string{"--fdname=" + daemon.TLSSocketName},
		[]string{"-tls-cert", certFile, "-tls-key", keyFile})
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("activated over TLS"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "activated over TLS" {
		t.Fatalf("TLS echo through the inherited socket: %q, %v", got, err)
	}
	waitLine(t, lines, "msg=listening proto=tls addr="+addr)
}

func TestSocketActivationTLSSocketNeedsCertificate(t *testing.T) {
	cmd, lines, addr := startActivated(t, []string{"--fdname=" + daemon.TLSSocketName}, nil)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
	}
	waitLine(t, lines, `the socket named "tls" from systemd needs -tls-cert and -tls-key`)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("echod exited with %v, want status 2", err)
	}
}
