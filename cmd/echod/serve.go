package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/admin"
	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/internal/tlscert"
)

// addrList is a repeatable HOST:PORT flag.
type addrList []string

func (a *addrList) String() string { return strings.Join(*a, ",") }

func (a *addrList) Set(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("want HOST:PORT, such as 127.0.0.1:7007 or [::1]:7007: %w", err)
	}
	*a = append(*a, s)
	return nil
}

// serveOptions is what the serve flags ask for, checked.
type serveOptions struct {
	listen, tlsListen, udpListen addrList
	udp                          bool // UDP echo on every -listen address too
	tlsCert, tlsKey              string
	proxyProtocol                bool
	trustedProxies               []netip.Prefix
	admin                        string
	shutdownTimeout              time.Duration
	logger                       *slog.Logger

	// server carries the engine and limit flags straight into its fields.
	server *echo.Server
}

// parseServe parses and checks the flags of echod serve.
func parseServe(args []string, std stdio) (*serveOptions, error) {
	o := &serveOptions{server: &echo.Server{}}
	srv := o.server
	fs := newFlagSet("serve", "echod serve [flags]", std.out)
	fs.Var(&o.listen, "listen", "serve TCP echo on `HOST:PORT`; repeat for more addresses (default :7007 when no -tls-listen or -udp-listen is given either)")
	fs.Var(&o.tlsListen, "tls-listen", "serve TLS echo on `HOST:PORT`; repeat for more addresses (needs -tls-cert and -tls-key)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate chain `file` (PEM) for -tls-listen; reread on SIGHUP")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key `file` (PEM) for -tls-listen; reread on SIGHUP")
	fs.BoolVar(&o.proxyProtocol, "proxy-protocol", false, "expect a PROXY protocol (v1 or v2) header on every TCP and TLS connection, and use the client address it gives; connections without one are rejected")
	proxyFrom := fs.String("proxy-protocol-from", "", "with -proxy-protocol, accept connections only from these proxies: comma-separated `CIDRs` or addresses (default: any peer)")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug (a line per connection), info, warn or error")
	fs.StringVar(&srv.Engine, "engine", echo.EngineAuto, "how connections are served: `engine` auto (epoll on Linux), goroutine (one goroutine each, portable) or epoll (Linux event loops)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long open sessions may take to finish before they are closed")
	fs.Var(&o.udpListen, "udp-listen", "serve UDP echo on `HOST:PORT` alone, without TCP; repeat for more (fly.io: fly-global-services:PORT)")
	fs.StringVar(&o.admin, "admin", "", "serve Prometheus /metrics, /healthz and /readyz over HTTP on `HOST:PORT`; keep it private (default off)")
	fs.BoolVar(&o.udp, "udp", false, "also serve UDP echo on every -listen address (off by default: UDP echo is a reflection and loop vector)")
	fs.IntVar(&srv.MaxConns, "max-conns", defaultMaxConns(fileLimit()), "most TCP `connections` open at once; beyond it new ones are reset; its default comes from the open-file limit; 0: no limit")
	fs.IntVar(&srv.MaxConnsPerIP, "max-conns-per-ip", 0, "most TCP `connections` open at once from one address (IPv6: one /64); 0: no limit")
	fs.DurationVar(&srv.IdleTimeout, "idle-timeout", 5*time.Minute, "close a TCP connection with no traffic either way for this `duration`; 0: never")
	fs.DurationVar(&srv.MaxSessionDuration, "max-session-duration", 0, "close a TCP connection this `duration` after it opened; 0: never")
	fs.Int64Var(&srv.MaxSessionBytes, "max-session-bytes", 0, "close a TCP connection once it has sent this many `bytes`, all echoed; 0: no limit")
	fs.BoolVar(&srv.UDPAllowPrivilegedPorts, "udp-allow-privileged-ports", false, "answer UDP datagrams from source ports below 1024 (where echo and chargen loops start)")
	fs.IntVar(&srv.UDPSourceRate, "udp-source-rate", 1000, "most UDP `datagrams` per second answered for one source address (IPv6: one /64); 0: no limit")
	fs.IntVar(&srv.UDPGlobalRate, "udp-global-rate", 20000, "most UDP `datagrams` per second answered in all; 0: no limit")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("serve", "unexpected argument %q", fs.Arg(0))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"shutdown-timeout", o.shutdownTimeout},
		{"idle-timeout", srv.IdleTimeout},
		{"max-session-duration", srv.MaxSessionDuration},
	} {
		if d.v < 0 {
			return nil, usagef("serve", "-%s must not be negative, got %v", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"max-conns", int64(srv.MaxConns)},
		{"max-conns-per-ip", int64(srv.MaxConnsPerIP)},
		{"max-session-bytes", srv.MaxSessionBytes},
		{"udp-source-rate", int64(srv.UDPSourceRate)},
		{"udp-global-rate", int64(srv.UDPGlobalRate)},
	} {
		if n.v < 0 {
			return nil, usagef("serve", "-%s must not be negative, got %d (0 means no limit)", n.name, n.v)
		}
	}
	if len(o.tlsListen) > 0 && (o.tlsCert == "" || o.tlsKey == "") {
		return nil, usagef("serve", "-tls-listen needs both -tls-cert and -tls-key")
	}
	if o.admin != "" {
		if _, _, err := net.SplitHostPort(o.admin); err != nil {
			return nil, usagef("serve", "invalid -admin %q: want HOST:PORT, such as 127.0.0.1:9090: %v", o.admin, err)
		}
	}
	switch srv.Engine {
	case echo.EngineAuto, echo.EngineGoroutine, echo.EngineEpoll:
	default:
		return nil, usagef("serve", "invalid -engine %q: want goroutine, epoll or auto", srv.Engine)
	}
	if *proxyFrom != "" {
		if !o.proxyProtocol {
			return nil, usagef("serve", "-proxy-protocol-from needs -proxy-protocol")
		}
		var err error
		if o.trustedProxies, err = proxied.ParseCIDRs(*proxyFrom); err != nil {
			return nil, usagef("serve", "-proxy-protocol-from: %v", err)
		}
	}
	var err error
	if o.logger, err = newLogger(std.err, *logFormat, *logLevel); err != nil {
		return nil, &usageError{cmd: "serve", err: err}
	}
	srv.Logger = o.logger
	return o, nil
}

// sockets are everything echod serve listens on.
type sockets struct {
	listeners []servedListener
	packets   []net.PacketConn
	admin     net.Listener        // nil without -admin
	proxies   []*proxied.Listener // for their rejection counts
	certs     *tlscert.Reloader   // nil without TLS
}

func (s *sockets) closeAll() {
	for _, sl := range s.listeners {
		sl.Close()
	}
	for _, pc := range s.packets {
		pc.Close()
	}
	if s.admin != nil {
		s.admin.Close()
	}
}

// open opens every socket the options ask for, or those systemd passed in,
// before anything is served on any of them: a bad address fails the start
// instead of leaving a half-started server.
func (o *serveOptions) open(ctx context.Context) (_ *sockets, err error) {
	// Sockets from systemd (socket activation) replace -listen,
	// -tls-listen and -udp-listen.
	inherited, err := socketsFromSystemd()
	if err != nil {
		return nil, err
	}
	listen, tlsListen, udpListen := o.listen, o.tlsListen, o.udpListen
	if inherited.empty() && len(listen)+len(tlsListen)+len(udpListen) == 0 {
		listen = addrList{":7007"}
	}
	if !inherited.empty() && len(listen)+len(tlsListen)+len(udpListen) > 0 {
		o.logger.Warn("serving the sockets from systemd; ignoring -listen, -tls-listen and -udp-listen")
		listen, tlsListen, udpListen = nil, nil, nil
	}

	s := &sockets{}
	defer func() {
		if err != nil {
			inherited.closeAll()
			s.closeAll()
		}
	}()
	wantTLS := len(tlsListen)+len(inherited.tls) > 0
	switch {
	case wantTLS && (o.tlsCert == "" || o.tlsKey == ""):
		return nil, usagef("serve", "the socket named %q from systemd needs -tls-cert and -tls-key", tlsSocketName)
	case !wantTLS && (o.tlsCert != "" || o.tlsKey != ""):
		return nil, usagef("serve", "-tls-cert and -tls-key need -tls-listen (or, from systemd, a socket named %q)", tlsSocketName)
	case wantTLS:
		if s.certs, err = tlscert.Load(o.tlsCert, o.tlsKey); err != nil {
			return nil, err
		}
	}

	wrap := func(l net.Listener, proto string) servedListener {
		if o.proxyProtocol {
			// The PROXY header comes first on the wire, before any TLS.
			pl := proxied.NewListener(l, proxied.Config{Trusted: o.trustedProxies, Logger: o.logger})
			s.proxies = append(s.proxies, pl)
			l = pl
		}
		if proto == "tls" {
			l = tls.NewListener(l, s.certs.Config())
		}
		return servedListener{Listener: l, proto: proto}
	}
	for _, l := range inherited.tcp {
		s.listeners = append(s.listeners, wrap(l, "tcp"))
	}
	for _, l := range inherited.tls {
		s.listeners = append(s.listeners, wrap(l, "tls"))
	}
	// A datagram socket from systemd (ListenDatagram=) is UDP echo that the
	// unit asked for, -udp or not.
	s.packets = append(s.packets, inherited.udp...)
	inherited = inheritedSockets{} // s owns them now

	var lc net.ListenConfig
	for _, addr := range listen {
		l, pc, err := listenOn(ctx, addr, o.udp)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, wrap(l, "tcp"))
		if pc != nil {
			s.packets = append(s.packets, pc)
		}
	}
	for _, addr := range tlsListen {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		s.listeners = append(s.listeners, wrap(l, "tls"))
	}
	for _, addr := range udpListen {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, err
		}
		s.packets = append(s.packets, pc)
	}
	if o.admin != "" {
		if s.admin, err = lc.Listen(ctx, "tcp", o.admin); err != nil {
			return nil, fmt.Errorf("-admin: %w", err)
		}
	}
	return s, nil
}

func runServe(ctx context.Context, args []string, std stdio) error {
	o, err := parseServe(args, std)
	if err != nil {
		return err
	}
	socks, err := o.open(ctx)
	if err != nil {
		return err
	}
	logger, srv := o.logger, o.server

	// SIGHUP rereads the TLS certificate; without TLS it is logged and
	// ignored rather than ending the process, as it would by default.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	errc := make(chan error, len(socks.listeners)+len(socks.packets))
	for _, sl := range socks.listeners {
		logger.Info("listening", "proto", sl.proto, "addr", sl.Addr().String())
		// Cancellation of ctx starts the graceful drain below; it must not
		// reach Serve, which would close connections at once.
		go func() { errc <- srv.Serve(context.WithoutCancel(ctx), sl.Listener) }()
	}
	for _, pc := range socks.packets {
		logger.Info("listening", "proto", "udp", "addr", pc.LocalAddr().String())
		go func() { errc <- srv.ServeUDP(context.WithoutCancel(ctx), pc) }()
	}
	var adm *adminServer
	if socks.admin != nil {
		h := admin.NewHandler(func() admin.Snapshot { return snapshot(srv, socks.proxies) })
		adm = startAdmin(socks.admin, h, logger)
		// Every listener is open: the kernel queues connections from now
		// on. Ready before the log line, so that whoever reads the line and
		// asks /readyz is told the truth.
		adm.setReady(true)
		logger.Info("listening", "proto", "http", "addr", socks.admin.Addr().String(), "serves", "/metrics /healthz /readyz")
	}
	defer adm.stop()

	var failed error
	for running := true; running; {
		select {
		case <-hup:
			reload(logger, socks.certs)
		case err := <-errc:
			failed = err
			adm.setReady(false)
			logger.Error("listener failed; stopping", "err", err)
			srv.Close()
			running = false
		case <-ctx.Done():
			// Unready first, so load balancers stop sending new
			// connections while the open ones finish.
			adm.setReady(false)
			logger.Info("shutting down; waiting for open sessions", "timeout", o.shutdownTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			err := srv.Shutdown(sctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				logger.Warn("shutdown timeout reached; closed the remaining sessions")
			}
			running = false
		}
	}
	// Wait for every Serve call; the one that failed has already returned.
	pending := len(socks.listeners) + len(socks.packets)
	if failed != nil {
		pending--
	}
	for range pending {
		<-errc
	}
	if failed != nil {
		return failed
	}
	logger.Info("stopped")
	return nil
}

// listenOn opens the TCP listener for addr and, with udp, a
// UDP socket on the same address and port. When addr asks for any free port
// (port 0), the UDP socket takes the port the TCP listener got, trying again
// with a new one if that port is taken for UDP.
func listenOn(ctx context.Context, addr string, udp bool) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil || !udp {
			return l, nil, err
		}
		got := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		pc, err := lc.ListenPacket(ctx, "udp", net.JoinHostPort(host, got))
		if err == nil {
			return l, pc, nil
		}
		l.Close()
		if port != "0" || attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, err
		}
	}
}

// fileLimit returns the soft limit on open files, which the Go runtime has
// already raised to (nearly) the hard limit at start (go.dev/issue/46279),
// or 0 if it cannot be read.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return lim.Cur
}

// defaultMaxConns derives -max-conns from the open-file limit: it keeps a
// tenth of the limit (at least 64 descriptors) in reserve for listeners, UDP
// sockets, logs and the connections accepted only to be refused, so that a
// server at its connection limit never meets EMFILE. It leaves room for a
// 10,000-connection benchmark wherever the limit allows that and 64 more.
// Zero (no limit) when the limit is unknown.
func defaultMaxConns(nofile uint64) int {
	const reserve, benchmark, most = 64, 10000, 1 << 20
	switch {
	case nofile == 0:
		return 0
	case nofile < 2*reserve:
		return int(nofile / 2)
	}
	n := nofile - max(nofile/10, reserve)
	if n < benchmark && nofile >= benchmark+reserve {
		n = benchmark
	}
	return int(min(n, most))
}

// servedListener is a listener and the protocol echod serves on it, for the
// log.
type servedListener struct {
	net.Listener
	proto string // tcp or tls
}

// reload rereads the TLS certificate, if there is one, after a SIGHUP. New
// handshakes use the new certificate; open connections keep theirs.
func reload(logger *slog.Logger, certs *tlscert.Reloader) {
	if certs == nil {
		logger.Info("SIGHUP: nothing to reload")
		return
	}
	if err := certs.Reload(); err != nil {
		logger.Error("SIGHUP: keeping the old TLS certificate", "err", err)
		return
	}
	logger.Info("SIGHUP: reloaded the TLS certificate")
}

// newLogger returns a slog logger writing to w in the given format and level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid -log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("invalid -log-format %q: want text or json", format)
	}
}
