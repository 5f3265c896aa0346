package tlscert

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"

	"github.com/echod/echod/internal/testcert"
)

func leafName(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil || c.Leaf == nil {
		t.Fatalf("GetCertificate = %v, %v", c, err)
	}
	return c.Leaf.Subject.CommonName
}

func TestReloadSwapsTheCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testcert.Write(t, dir, "server", "first")
	r, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := leafName(t, r); got != "first" {
		t.Fatalf("serving %q, want first", got)
	}
	testcert.Write(t, dir, "server", "second")
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := leafName(t, r); got != "second" {
		t.Fatalf("after reload serving %q, want second", got)
	}
}

func TestFailedReloadKeepsTheOldCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := testcert.Write(t, dir, "server", "first")
	r, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// A renewal caught halfway: the new certificate is there, its key is not.
	otherCert, _, _ := testcert.Write(t, dir, "unused", "second")
	data, err := os.ReadFile(otherCert)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	err = r.Reload()
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("Reload with a mismatched key = %v, want an error naming %s", err, certFile)
	}
	if got := leafName(t, r); got != "first" {
		t.Fatalf("after a failed reload serving %q, want first", got)
	}
}

func TestLoadReportsMissingFiles(t *testing.T) {
	_, err := Load("/nonexistent/cert.pem", "/nonexistent/key.pem")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/cert.pem") {
		t.Fatalf("Load = %v, want an error naming the file", err)
	}
}
