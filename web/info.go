package web

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"

	"github.com/echod/echod/internal/tcpinfo"
)

// InfoPath is where the Handler answers GET with ConnInfo, echod's view of
// the requesting connection, for `echod path` and for people. It is the
// only path the request echo does not own.
const InfoPath = "/.well-known/echod/conn"

// ConnInfo is echod's view of the connection a request came on.
type ConnInfo struct {
	// Client is the client's address as echod sees it: the TCP peer, or
	// under the PROXY protocol the source the proxy gave.
	Client string `json:"client"`
	// Peer is the TCP peer when it is not Client: the proxy that sent a
	// PROXY header.
	Peer string `json:"peer,omitempty"`
	// Server is the address the connection came to.
	Server   string `json:"server"`
	Protocol string `json:"protocol"`
	TLS      *TLS   `json:"tls"`
	// TCP is the kernel's view of the connection from echod's end (Linux
	// only; absent elsewhere, or when the server was not given the
	// connection with ConnContext).
	TCP *tcpinfo.Info `json:"tcp,omitempty"`
}

type connKey struct{}

// ConnContext returns ctx carrying c, for http.Server's ConnContext, so
// that the info endpoint can read the kernel's view of the connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// serveInfo answers with ConnInfo as JSON.
func (h *Handler) serveInfo(w http.ResponseWriter, r *http.Request) {
	ci := ConnInfo{Client: r.RemoteAddr, Protocol: r.Proto}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		ci.Server = la.String()
	}
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if ti, ok := tcpinfo.Of(c); ok {
			ci.TCP = &ti
		}
		if peer := socketPeer(c); peer != "" && peer != ci.Client {
			ci.Peer = peer
		}
	}
	if r.TLS != nil {
		ci.TLS = &TLS{
			Version: tls.VersionName(r.TLS.Version),
			Cipher:  tls.CipherSuiteName(r.TLS.CipherSuite),
			ALPN:    r.TLS.NegotiatedProtocol,
			SNI:     r.TLS.ServerName,
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(ci)
}

// socketPeer returns the remote address of the socket under c, below any
// wrapper that says what it wraps with NetConn, or "" when it cannot tell.
func socketPeer(c net.Conn) string {
	for range 8 {
		if tc, ok := c.(*net.TCPConn); ok {
			return tc.RemoteAddr().String()
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return ""
		}
		c = w.NetConn()
	}
	return ""
}
