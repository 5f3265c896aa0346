package main

import (
	"strings"
	"testing"

	"github.com/echod/echod/internal/testcert"
)

// check, send and bench take -ca, -insecure and -sni alike: without -ca a
// note says the certificate goes unverified, -insecure leaves the note
// out, and -sni is the name the certificate is verified against.
func TestTLSFlagsAlike(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	addrs, _ := startServeAll(t, 1, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	url := "tls://" + addrs["tls"][0]
	for _, cmd := range [][]string{
		{"check", "-run", "smoke"},
		{"send", "-verify"},
		{"bench", "-d", "100ms", "-warmup", "0"},
	} {
		args := func(flags ...string) []string {
			a := append(append(append([]string{}, cmd...), flags...), url)
			if cmd[0] == "send" {
				a = append(a, "hello")
			}
			return a
		}
		t.Run(cmd[0], func(t *testing.T) {
			code, _, stderr := runCmd(t, nil, args()...)
			if code != 0 || !strings.HasPrefix(stderr, "note: not verifying the TLS certificate of ") {
				t.Errorf("no flags: exit %d, stderr %q", code, stderr)
			}
			code, _, stderr = runCmd(t, nil, args("-insecure")...)
			if code != 0 || stderr != "" {
				t.Errorf("-insecure: exit %d, stderr %q", code, stderr)
			}
			code, _, stderr = runCmd(t, nil, args("-ca", certFile, "-sni", "localhost")...)
			if code != 0 || stderr != "" {
				t.Errorf("-ca -sni localhost: exit %d, stderr %q", code, stderr)
			}
			code, stdout, stderr := runCmd(t, nil, args("-ca", certFile, "-sni", "example.org")...)
			if code == 0 || !strings.Contains(stdout+stderr, "certificate is valid for localhost, not example.org") {
				t.Errorf("-ca -sni example.org: exit %d\n%s\n%s", code, stdout, stderr)
			}
		})
	}
}

// path takes them too; it names what it verified in its TLS line rather
// than in a note.
func TestPathTLSFlags(t *testing.T) {
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	addrs, _ := startServeAll(t, 1, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile)
	url := "tls://" + addrs["tls"][0]
	run := func(flags ...string) (int, string) {
		args := append([]string{"path", "-max-idle", "0", "-n", "3", "-bulk", "4096"}, flags...)
		code, stdout, stderr := runCmd(t, nil, append(args, url)...)
		return code, stdout + stderr
	}
	if code, out := run("-ca", certFile, "-sni", "localhost"); code != 0 || !strings.Contains(out, "verified") || strings.Contains(out, "not verified") {
		t.Errorf("-ca -sni localhost: exit %d\n%s", code, out)
	}
	if code, out := run("-insecure"); code != 0 || !strings.Contains(out, "not verified") {
		t.Errorf("-insecure: exit %d\n%s", code, out)
	}
	if code, out := run("-ca", certFile, "-sni", "example.org"); code == 0 || !strings.Contains(out, "certificate is valid for localhost, not example.org") {
		t.Errorf("-ca -sni example.org: exit %d\n%s", code, out)
	}
	if code, _, stderr := runCmd(t, nil, "path", "-sni", "localhost", "tcp://127.0.0.1:1"); code != 2 || !strings.Contains(stderr, "-sni applies to tls:// and wss://") {
		t.Errorf("-sni on tcp://: exit %d\n%s", code, stderr)
	}
}
