package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/web"
)

// Timeouts and limits of the web echo's http.Server. A request has
// webReadTimeout to arrive in full, headers and body (a 1 MiB body at
// 17 KB/s); an answer may wait for ?delay= and then has a minute to be
// written. Upgraded WebSocket connections leave these behind: net/http
// clears the deadlines when the connection is taken over, and the
// web.Handler's IdleTimeout (-idle-timeout) bounds them instead.
const (
	webReadHeaderTimeout = 10 * time.Second
	webReadTimeout       = time.Minute
	webWriteTimeout      = time.Minute
	webMaxHeaderBytes    = 64 << 10
	webIdleTimeout       = 2 * time.Minute // between requests, when -idle-timeout is 0
	// webMaxStreams bounds the requests one HTTP/2 connection carries at
	// once (net/http's default is 250), so that -max-conns-per-ip bounds
	// requests too; the web.Handler bounds them per address as well.
	webMaxStreams = 32
)

// webServer serves the web echo on every HTTP and HTTPS listener: one
// http.Server around the web.Handler, drained together.
type webServer struct {
	http    *http.Server
	handler *web.Handler
	conns   atomic.Int64 // open now, upgraded or not
}

// Shutdown stops the listeners, lets requests in progress finish, and
// closes every WebSocket with a close frame once its echo in flight is
// written, all until ctx ends.
func (w *webServer) Shutdown(ctx context.Context) error {
	var g errgroup.Group
	g.Go(func() error { return w.http.Shutdown(ctx) })
	g.Go(func() error { return w.handler.Shutdown(ctx) })
	return g.Wait()
}

// Close closes every listener and connection at once.
func (w *webServer) Close() error {
	err := w.http.Close()
	w.handler.Close()
	return err
}

// webServer returns the daemon's web server, made on first use.
func (d *daemon) webServer() *webServer {
	if d.web != nil {
		return d.web
	}
	cfg := d.cfg
	h := cfg.Web
	if h == nil {
		h = &web.Handler{}
	}
	if h.Adopter == nil && cfg.Server.EventLoops() {
		// WebSockets over plain HTTP are echoed on the event loops,
		// under the echo server's limits and drain.
		h.Adopter = loopAdopter{cfg.Server}
	}
	idle := cfg.Server.IdleTimeout
	if idle <= 0 {
		idle = webIdleTimeout
	}
	d.web = &webServer{
		handler: h,
		http: &http.Server{
			Handler:           budgetHandler{Handler: h, lim: d.bandwidth},
			ReadHeaderTimeout: webReadHeaderTimeout,
			ReadTimeout:       webReadTimeout,
			WriteTimeout:      max(h.MaxDelay, web.DefaultMaxDelay) + webWriteTimeout,
			IdleTimeout:       idle,
			MaxHeaderBytes:    webMaxHeaderBytes,
			HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: webMaxStreams},
			ConnContext:       web.ConnContext, // for the kernel's view in web.InfoPath
			// A bad client's TLS handshake or malformed request is its
			// own business, not the operator's.
			ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
		},
	}
	d.servers = append(d.servers, d.web)
	return d.web
}

// addWeb serves the web echo on l, proto "http" or "https". Each
// connection holds a place under the echo server's -max-conns and
// -max-conns-per-ip for as long as it is open, WebSocket or not; the PROXY
// header, with -proxy-protocol, comes first, then TLS for HTTPS.
func (d *daemon) addWeb(l net.Listener, proto string) {
	w := d.webServer()
	l = &admitListener{Listener: d.proxied(l), reserve: d.cfg.Server.Reserve, open: &w.conns}
	// Under TLS, so that what is counted is what is sent.
	l = d.bandwidth.Listener(l)
	if proto == "https" {
		tc := d.certs.Config()
		// HTTP/2 for requests; WebSocket upgrades are HTTP/1.1 (net/http
		// does not offer WebSocket over HTTP/2).
		tc.NextProtos = []string{"h2", "http/1.1"}
		// A client certificate is asked for, never required or verified:
		// the echo reports its subject.
		tc.ClientAuth = tls.RequestClientCert
		l = &webTLSListener{Listener: l, config: tc, timeout: d.cfg.TLSHandshakeTimeout}
	}
	d.add(endpoint{proto: proto, addr: l.Addr(), close: l.Close,
		serve: func() error { return w.http.Serve(l) }})
}

// loopAdopter hands an upgraded WebSocket connection to the echo server's
// event loops: what the web listener wrapped around the socket (the
// bandwidth budget's hold, the place under -max-conns, the PROXY header's
// reader) is taken off, since the echo server applies the same from now
// on.
type loopAdopter struct{ srv *echo.Server }

func (a loopAdopter) Adopt(h echo.Handoff) error {
	// From the outside in, as addWeb wraps them.
	if c, ok := h.Conn.(*bandwidth.Conn); ok {
		h.Conn = c.Release()
	}
	if c, ok := h.Conn.(*admittedConn); ok {
		h.Conn = c.detach() // Adopt admits it again, by the same limits
	}
	if c, ok := h.Conn.(*proxied.Conn); ok {
		sock, rest := c.Detach()
		// What net/http read ahead of the PROXY reader's own buffer
		// comes first.
		h.Conn, h.Buffered = sock, append(bytes.Clone(h.Buffered), rest...)
	}
	return a.srv.Adopt(h)
}

// admitListener admits each connection under the echo server's connection
// limits, and resets those over them, as the echo server does its own.
type admitListener struct {
	net.Listener
	reserve func(netip.Addr) (release func(), ok bool)
	open    *atomic.Int64 // connections admitted and not yet closed
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		var addr netip.Addr // the zero Addr for a peer that is not IP
		if ta, isTCP := c.RemoteAddr().(*net.TCPAddr); isTCP {
			addr = ta.AddrPort().Addr().Unmap()
		}
		release, ok := l.reserve(addr)
		if !ok {
			// A reset, as for the echo's own refusals; a PROXY
			// connection offers SetLinger too.
			if lc, canReset := c.(interface{ SetLinger(int) error }); canReset {
				lc.SetLinger(0)
			}
			c.Close()
			continue
		}
		l.open.Add(1)
		return &admittedConn{Conn: c, release: func() {
			release()
			l.open.Add(-1)
		}}, nil
	}
}

// admittedConn gives its place back when closed, by net/http or, for a
// WebSocket, by the web.Handler that took it over.
type admittedConn struct {
	net.Conn
	release func()
	closed  atomic.Bool
}

// NetConn returns the connection admitted, for what looks under it (the
// web echo's TCP_INFO).
func (c *admittedConn) NetConn() net.Conn { return c.Conn }

func (c *admittedConn) Close() error {
	c.detach()
	return c.Conn.Close()
}

// detach gives c's place back and returns the connection inside, for a
// server that admits and closes it from now on.
func (c *admittedConn) detach() net.Conn {
	if c.closed.CompareAndSwap(false, true) {
		c.release()
	}
	return c.Conn
}

// CloseWrite half-closes the connection, when the one inside can: net/http
// does before it closes a connection with a request body left unread, so
// that the client reads its answer rather than a reset.
func (c *admittedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// webTLSListener serves TLS on the connections of an inner listener, and
// ends each whose handshake has not finished within timeout: net/http
// gives a handshake its ReadHeaderTimeout instead, and only the first
// read of a *tls.Conn, as net/http needs for HTTP/2, may run it.
type webTLSListener struct {
	net.Listener
	config  *tls.Config
	timeout time.Duration
}

func (l *webTLSListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	expire := time.AfterFunc(l.timeout, func() { c.Close() })
	cfg := l.config.Clone()
	cfg.VerifyConnection = func(tls.ConnectionState) error {
		if !expire.Stop() {
			return errHandshakeTimeout // and the connection is closed
		}
		return nil
	}
	return tls.Server(c, cfg), nil
}
