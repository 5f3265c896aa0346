package check

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/echod/echod/internal/wsclient"
)

// The wrong scheme on a WebSocket URL gets a reason that names the right
// address, as tls:// and plain addresses do.
func TestWebSocketWrongSchemeHints(t *testing.T) {
	insecure := &tls.Config{InsecureSkipVerify: true}
	tlsEcho := serveTLS(t)
	plainEcho := serveTCP(t, echoConn)
	web := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(web.Close)
	webAddr := web.Listener.Addr().String()
	for _, tt := range []struct {
		name, url string
		want      string // in the error
	}{
		// Was: "... it is a plain echo server, not WebSocket; check it as ADDR"
		// (without tls://, so a TLS echo server is checked in plain text).
		{"wss to a TLS echo server", "wss://" + tlsEcho + "/", "check it as tls://" + tlsEcho},
		// Was: "TLS handshake with ADDR: tls: received unexpected handshake
		// message of type *tls.clientHelloMsg when waiting for *tls.serverHelloMsg".
		{"wss to a plain echo server", "wss://" + plainEcho + "/", "it is a plain echo server, not TLS"},
		// Was: "TLS handshake with ADDR: tls: first record does not look like a TLS handshake".
		{"wss to a plain web server", "wss://" + webAddr + "/", "web server"},
		// Was: "read the answer to the WebSocket upgrade request: unexpected EOF".
		{"ws to a TLS echo server", "ws://" + tlsEcho + "/", "wss://"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(context.Background(), Config{URL: tt.url, TLS: insecure, Patience: testPatience})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("check %s: %v, want an error containing %q", tt.url, err, tt.want)
			}
			// echod send dials the same way, and hears the same hint.
			err = wsclient.Send(context.Background(), wsclient.SendConfig{URL: tt.url, TLS: insecure, Patience: testPatience}, strings.NewReader("hello"), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("send %s: %v, want an error containing %q", tt.url, err, tt.want)
			}
		})
	}
}
