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
