// Package daemon assembles a running echod from a Config: it opens the
// listeners and TCP+UDP pairs (or takes the sockets systemd passed), wraps
// connections in TLS and the PROXY protocol, serves the admin endpoints, and
// runs it all until its context ends. Then it drains: listeners close at
// once, open sessions get a bounded time to finish, and the rest are closed.
package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/internal/tlscert"
	"github.com/echod/echod/web"
)

// Defaults for the Config fields whose zero value stands for them.
const (
	// DefaultListen is where TCP echo is served when Config names no
	// address of any kind and systemd passed no socket.
	DefaultListen = ":7007"
	// DefaultTLSHandshakeTimeout bounds a TLS handshake.
	DefaultTLSHandshakeTimeout = 10 * time.Second
	// DefaultProxyHeaderTimeout bounds the wait for a PROXY header.
	DefaultProxyHeaderTimeout = 5 * time.Second
	// DefaultProxyPendingPerIP bounds the connections from one address
	// (IPv6: one /64) that may wait for their PROXY header at once.
	DefaultProxyPendingPerIP = 64
	// DefaultShutdownTimeout is how long open sessions may take to finish
	// once Run's context ends.
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultIdleTimeout closes a connection (or WebSocket) with no
	// traffic either way for this long.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultUDPSourceRate and DefaultUDPGlobalRate bound the UDP datagrams
	// answered per second, for one source address and in all: UDP echo is
	// a reflection vector.
	DefaultUDPSourceRate = 1000
	DefaultUDPGlobalRate = 20000
)

// NewServer returns the echo.Server that echod serve runs without flags:
// the limits of its flags' defaults (DefaultMaxConns, DefaultIdleTimeout,
// DefaultUDPSourceRate, DefaultUDPGlobalRate). A zero echo.Server applies
// none, which is safe only behind something that does.
func NewServer() *echo.Server {
	return &echo.Server{
		MaxConns:      DefaultMaxConns(),
		IdleTimeout:   DefaultIdleTimeout,
		UDPSourceRate: DefaultUDPSourceRate,
		UDPGlobalRate: DefaultUDPGlobalRate,
	}
}

// Config is what a running echod serves, and how. The zero value serves TCP
// echo on DefaultListen with the same limits and timeouts as echod serve
// without flags. The fields mirror the flags of echod serve, named in each
// comment.
type Config struct {
	// Server echoes on every TCP, TLS and UDP socket; its fields are the
	// engine and the limits. Run owns it: it drains and closes it. Nil
	// means NewServer's, with the limits of the flags' defaults; a Server
	// given is used as it is, its zero fields meaning no limit.
	Server *echo.Server
	// Logger receives the readiness lines ("listening", one per socket,
	// once it accepts), the drain and failures. Nil discards them.
	Logger *slog.Logger

	// Listen lists the HOST:PORT addresses of TCP echo (-listen).
	Listen []string
	// UDP also serves UDP echo on every Listen address and port (-udp).
	UDP bool
	// TLSListen lists the addresses of TLS echo (-tls-listen).
	TLSListen []string
	// UDPListen lists addresses of UDP echo without TCP (-udp-listen).
	UDPListen []string
	// HTTPListen and HTTPSListen list the addresses of the web echo
	// (-http-listen, -https-listen): WebSocket echo, HTTP request echo and
	// the page, served by Web. HTTPS uses TLSCert and TLSKey, and offers
	// HTTP/2.
	HTTPListen, HTTPSListen []string
	// Web serves the web echo; nil means a web.Handler whose IdleTimeout
	// is Server's, as the flags make it. Its limits are its fields; Run
	// drains it.
	Web *web.Handler

	// TLSCert and TLSKey are the PEM files of the TLS certificate and key
	// (-tls-cert, -tls-key), needed by TLS sockets and refused without any.
	// Each value received from Reload rereads them.
	TLSCert, TLSKey string
	// TLSHandshakeTimeout bounds each TLS handshake, so that a half-open
	// one does not hold its connection until the idle timeout
	// (-tls-handshake-timeout). Zero means DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration

	// ProxyProtocol expects a PROXY protocol header on every TCP and TLS
	// connection, and serves it as coming from the client the header
	// names (-proxy-protocol).
	ProxyProtocol bool
	// TrustedProxies lists the peers allowed to send a PROXY header
	// (-proxy-protocol-from); empty trusts every peer.
	TrustedProxies []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a PROXY header
	// (-proxy-header-timeout). Zero means DefaultProxyHeaderTimeout.
	ProxyHeaderTimeout time.Duration
	// ProxyPendingPerIP bounds the connections from one address (IPv6:
	// one /64) waiting for their PROXY header at once; more are refused
	// (-proxy-pending-per-ip). Zero means DefaultProxyPendingPerIP.
	ProxyPendingPerIP int

	// Bandwidth is the budgets of bytes per second and of egress
	// (-rate-per-conn, -rate-per-ip, -egress-budget), shared by every
	// transport: one Limiter made from it throttles the echo server (as
	// its Bandwidth, unless Server has its own) and the web echo.
	Bandwidth bandwidth.Config

	// Admin is the HOST:PORT of the HTTP admin endpoints, /metrics,
	// /healthz and /readyz (-admin); empty serves none.
	Admin string

	// ShutdownTimeout is how long open sessions may take to finish once
	// the context of Run ends, before they are closed (-shutdown-timeout).
	// Zero means DefaultShutdownTimeout; negative closes them at once
	// (the flag's 0).
	ShutdownTimeout time.Duration

	// Reload rereads the TLS certificate each time it receives (echod
	// serve relays SIGHUP to it). Nil never reloads.
	Reload <-chan os.Signal
}

// Run opens every socket cfg asks for (all of them, before serving any, so
// that a bad address fails the start rather than leaving half a server),
// logs a readiness line for each and serves them until ctx ends; then it
// drains, and returns nil. If a listener fails, Run closes everything and
// returns its error. A mistake in cfg itself is a *ConfigError.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	d, err := open(ctx, &cfg)
	if err != nil {
		return err
	}
	return d.run(ctx)
}

// ConfigError is a Config that cannot be served as it is, such as a TLS
// socket without a certificate: a mistake to fix rather than a failure at
// run time.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

func (c *Config) setDefaults() {
	if c.Server == nil {
		c.Server = NewServer()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Web == nil {
		c.Web = &web.Handler{IdleTimeout: c.Server.IdleTimeout, Logger: c.Logger,
			MaxSessionDuration: c.Server.MaxSessionDuration, MaxSessionBytes: c.Server.MaxSessionBytes}
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.TLSHandshakeTimeout <= 0 {
		c.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if c.ProxyHeaderTimeout <= 0 {
		c.ProxyHeaderTimeout = DefaultProxyHeaderTimeout
	}
	if c.ProxyPendingPerIP <= 0 {
		c.ProxyPendingPerIP = DefaultProxyPendingPerIP
	}
}

// endpoint is one socket the daemon serves: a kind of listener, once open
// and wrapped.
//
// Another kind of listener (HTTP echo, say) is three small pieces:
//  1. a Config field with its addresses, and its flag in cmd/echod/serve.go;
//  2. in open, a loop that listens on each address (with explain(err, addr,
//     flag) on failure), wraps each listener as it needs (PROXY, or
//     newHandshakeListener for TLS), and adds an endpoint: the proto of its
//     readiness line, the address, serve (which blocks until its server is
//     shut down) and close. A socket from systemd for it is one named by
//     FileDescriptorName, as TLSSocketName is, sorted in socketsFromSystemd;
//  3. its server, appended once to daemon.servers, so that the drain shuts
//     it down together with the echo server, within ShutdownTimeout, and
//     then closes it: an http.Server, or a small type whose Shutdown and
//     Close do the http.Server's and then a handler's.
//
// Run logs every endpoint's readiness line, serves them in one errgroup,
// stops everything when one fails, and takes echo.ErrServerClosed and
// http.ErrServerClosed for a normal end. A connection served elsewhere can
// count against -max-conns and -max-conns-per-ip through Server.Reserve.
type endpoint struct {
	proto string // in the readiness line: tcp, tls, udp, http or https
	addr  net.Addr
	serve func() error // until the server serving it shuts down
	close func() error // only if the daemon fails to start
}

// server serves some of the endpoints and drains them: echo.Server, and
// http.Server for any kind served over HTTP.
type server interface {
	Shutdown(context.Context) error
	Close() error
}

// daemon is a Config with every socket open, ready to serve.
type daemon struct {
	cfg       *Config
	log       *slog.Logger
	endpoints []endpoint
	servers   []server            // drained together, in Shutdown order
	web       *webServer          // nil without web echo
	admin     net.Listener        // nil without Config.Admin
	proxies   []*proxied.Listener // for their rejection counts
	certs     *tlscert.Reloader   // nil without TLS
	bandwidth *bandwidth.Limiter  // nil without budgets
}

func (d *daemon) add(ep endpoint) { d.endpoints = append(d.endpoints, ep) }

// closeAll closes every socket, when the start fails.
func (d *daemon) closeAll() {
	for _, ep := range d.endpoints {
		ep.close()
	}
	if d.admin != nil {
		d.admin.Close()
	}
}

func (d *daemon) run(ctx context.Context) error {
	// The group's context ends when a listener fails, never because ctx
	// ended: that starts the drain below, which Serve must not see.
	g, failed := errgroup.WithContext(context.WithoutCancel(ctx))
	for _, ep := range d.endpoints {
		d.log.Info("listening", "proto", ep.proto, "addr", ep.addr.String())
		g.Go(func() error { return ignoreClosed(ep.serve()) })
	}
	adm := d.startAdmin(g)
	// The bandwidth budgets' log lines, written here rather than by the
	// connections (an event loop must not block on one), until Run ends.
	budgetLog, stopBudgetLog := context.WithCancel(context.Background())
	var logging sync.WaitGroup
	logging.Go(func() { d.bandwidth.Run(budgetLog) })
	defer logging.Wait()
	defer stopBudgetLog()

	for {
		select {
		case <-d.cfg.Reload:
			d.reload()
			continue
		case <-failed.Done():
			adm.setReady(false)
			d.log.Error("listener failed; stopping", "err", context.Cause(failed))
			for _, s := range d.servers {
				s.Close()
			}
			adm.stop()
			return g.Wait()
		case <-ctx.Done():
			// Unready first, so load balancers stop sending new
			// connections while the open ones finish.
			adm.setReady(false)
			d.log.Info("shutting down; waiting for open sessions", "timeout", max(d.cfg.ShutdownTimeout, 0))
			d.drain()
			adm.stop()
			if err := g.Wait(); err != nil {
				d.log.Warn("a listener failed while draining", "err", err)
			}
			d.log.Info("stopped")
			return nil
		}
	}
}

// drain shuts every server down together, waiting for open sessions until
// the shutdown timeout, and then closes what remains.
func (d *daemon) drain() {
	sctx, cancel := context.WithTimeout(context.Background(), d.cfg.ShutdownTimeout)
	defer cancel()
	var g errgroup.Group
	for _, s := range d.servers {
		g.Go(func() error { return s.Shutdown(sctx) })
	}
	if err := g.Wait(); errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("shutdown timeout reached; closed the remaining sessions")
	}
	// Shutdown ends connections only when its context does; Close makes
	// sure nothing outlives Run whatever a server does on its timeout.
	for _, s := range d.servers {
		s.Close()
	}
}

// ignoreClosed turns the error a Serve returns once its server is shut down
// or closed into nil: that is how serving ends.
func ignoreClosed(err error) error {
	if errors.Is(err, echo.ErrServerClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// reload rereads the TLS certificate, if there is one. New handshakes use
// the new certificate; open connections keep theirs.
func (d *daemon) reload() {
	if d.certs == nil {
		d.log.Info("SIGHUP: nothing to reload")
		return
	}
	if err := d.certs.Reload(); err != nil {
		d.log.Error("SIGHUP: keeping the old TLS certificate", "err", err)
		return
	}
	d.log.Info("SIGHUP: reloaded the TLS certificate")
}
