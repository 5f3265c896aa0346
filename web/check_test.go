package web

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/echod/echod/check"
)

// TestCheckPassesTheHandler runs echod's own WebSocket conformance suite
// against the Handler, over ws:// and over wss:// with HTTP/2 offered.
func TestCheckPassesTheHandler(t *testing.T) {
	h := &Handler{}
	plain := serve(t, h)
	secure := httptest.NewUnstartedServer(h)
	secure.EnableHTTP2 = true
	secure.StartTLS()
	t.Cleanup(secure.Close) // its upgraded connections are h's, closed by serve's cleanup
	roots := x509.NewCertPool()
	roots.AddCert(secure.Certificate())

	for _, cfg := range []check.Config{
		{URL: wsURL(plain, "/")},
		{URL: "wss" + strings.TrimPrefix(secure.URL, "https") + "/deep/path?q=1", TLS: &tls.Config{RootCAs: roots, ServerName: "example.com"}},
	} {
		t.Run(cfg.URL[:strings.Index(cfg.URL, ":")], func(t *testing.T) {
			rep, err := check.Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rep.Results {
				if r.Status != check.Pass {
					t.Errorf("%s: %s %s", r.Name, r.Status, r.Reason)
				}
			}
			if !rep.OK() || len(rep.Results) != len(check.WebSocketChecks()) {
				t.Errorf("%d results, OK %v", len(rep.Results), rep.OK())
			}
		})
	}
}
