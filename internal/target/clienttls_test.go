package target

import (
	"cmp"
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

// serveTLS runs a TLS server with a certificate for localhost and the
// loopback addresses that answers each handshake, and returns its address
// and the certificate's file.
func serveTLS(t *testing.T) (addr, certFile string) {
	t.Helper()
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "echod test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l := tls.NewListener(testkit.Listen(t), &tls.Config{Certificates: []tls.Certificate{cert}})
	return testkit.Serve(t, l, func(c net.Conn) { c.(*tls.Conn).Handshake() }), certFile
}

func handshakeConfig(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = Handshake(ctx, c, cfg)
	return err
}

func TestClientTLS(t *testing.T) {
	addr, certFile := serveTLS(t)
	other, _, _ := testcert.Write(t, t.TempDir(), "other", "someone else")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for _, tc := range []struct {
		name      string
		o         ClientTLS
		host      string
		configErr string // from Config
		verifies  bool   // whether the handshake succeeds
	}{
		{"no CA takes any certificate", ClientTLS{}, "127.0.0.1", "", true},
		{"the CA, by IP", ClientTLS{CAFile: certFile}, "127.0.0.1", "", true},
		{"the CA, by a name in the certificate", ClientTLS{CAFile: certFile, ServerName: "localhost"}, "127.0.0.1", "", true},
		{"the CA, a name not in it", ClientTLS{CAFile: certFile, ServerName: "example.org"}, "127.0.0.1", "", false},
		{"another CA", ClientTLS{CAFile: other}, "127.0.0.1", "", false},
		{"a missing file", ClientTLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")}, "127.0.0.1", "-ca: open ", false},
		{"not PEM", ClientTLS{CAFile: notPEM}, "127.0.0.1", "no PEM certificate in it", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.o.Config(tc.host)
			if tc.configErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.configErr) {
					t.Fatalf("Config: %v, want an error with %q", err, tc.configErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := cmp.Or(tc.o.ServerName, tc.host); cfg.ServerName != want {
				t.Errorf("ServerName %q, want %q", cfg.ServerName, want)
			}
			if err := handshakeConfig(t, addr, cfg); (err == nil) != tc.verifies {
				t.Errorf("handshake: %v, want success %v", err, tc.verifies)
			}
		})
	}
}
