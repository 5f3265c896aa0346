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

func runServe(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("serve", "echod serve [flags]", std.out)
	var listen addrList
	fs.Var(&listen, "listen", "serve TCP echo on `HOST:PORT`; repeat for more addresses (default :7007 when no -tls-listen or -udp-listen is given either)")
	var tlsListen addrList
	fs.Var(&tlsListen, "tls-listen", "serve TLS echo on `HOST:PORT`; repeat for more addresses (needs -tls-cert and -tls-key)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate chain `file` (PEM) for -tls-listen; reread on SIGHUP")
	tlsKey := fs.String("tls-key", "", "TLS private key `file` (PEM) for -tls-listen; reread on SIGHUP")
	proxyProtocol := fs.Bool("proxy-protocol", false, "expect a PROXY protocol (v1 or v2) header on every TCP and TLS connection, and use the client address it gives; connections without one are rejected")
	proxyFrom := fs.String("proxy-protocol-from", "", "with -proxy-protocol, accept connections only from these proxies: comma-separated `CIDRs` or addresses (default: any peer)")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug (a line per connection), info, warn or error")
	engine := fs.String("engine", echo.EngineAuto, "how connections are served: `engine` auto (epoll on Linux), goroutine (one goroutine each, portable) or epoll (Linux event loops)")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long open sessions may take to finish before they are closed")
	var udpListen addrList
	fs.Var(&udpListen, "udp-listen", "serve UDP echo on `HOST:PORT` alone, without TCP; repeat for more (fly.io: fly-global-services:PORT)")
	adminAddr := fs.String("admin", "", "serve Prometheus /metrics, /healthz and /readyz over HTTP on `HOST:PORT`; keep it private (default off)")
	udp := fs.Bool("udp", false, "also serve UDP echo on every -listen address (off by default: UDP echo is a reflection and loop vector)")
	maxConns := fs.Int("max-conns", defaultMaxConns(fileLimit()), "most TCP `connections` open at once; beyond it new ones are reset; its default comes from the open-file limit; 0: no limit")
	maxPerIP := fs.Int("max-conns-per-ip", 0, "most TCP `connections` open at once from one address (IPv6: one /64); 0: no limit")
	idleTimeout := fs.Duration("idle-timeout", 5*time.Minute, "close a TCP connection with no traffic either way for this `duration`; 0: never")
	maxDuration := fs.Duration("max-session-duration", 0, "close a TCP connection this `duration` after it opened; 0: never")
	maxBytes := fs.Int64("max-session-bytes", 0, "close a TCP connection once it has sent this many `bytes`, all echoed; 0: no limit")
	udpPrivileged := fs.Bool("udp-allow-privileged-ports", false, "answer UDP datagrams from source ports below 1024 (where echo and chargen loops start)")
	udpSourceRate := fs.Int("udp-source-rate", 1000, "most UDP `datagrams` per second answered for one source address (IPv6: one /64); 0: no limit")
	udpGlobalRate := fs.Int("udp-global-rate", 20000, "most UDP `datagrams` per second answered in all; 0: no limit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve", "unexpected argument %q", fs.Arg(0))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"shutdown-timeout", *shutdownTimeout},
		{"idle-timeout", *idleTimeout},
		{"max-session-duration", *maxDuration},
	} {
		if d.v < 0 {
			return usagef("serve", "-%s must not be negative, got %v", d.name, d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"max-conns", int64(*maxConns)},
		{"max-conns-per-ip", int64(*maxPerIP)},
		{"max-session-bytes", *maxBytes},
		{"udp-source-rate", int64(*udpSourceRate)},
		{"udp-global-rate", int64(*udpGlobalRate)},
	} {
		if n.v < 0 {
			return usagef("serve", "-%s must not be negative, got %d (0 means no limit)", n.name, n.v)
		}
	}
	if len(tlsListen) > 0 && (*tlsCert == "" || *tlsKey == "") {
		return usagef("serve", "-tls-listen needs both -tls-cert and -tls-key")
	}
	if *adminAddr != "" {
		if _, _, err := net.SplitHostPort(*adminAddr); err != nil {
			return usagef("serve", "invalid -admin %q: want HOST:PORT, such as 127.0.0.1:9090: %v", *adminAddr, err)
		}
	}
	switch *engine {
	case echo.EngineAuto, echo.EngineGoroutine, echo.EngineEpoll:
	default:
		return usagef("serve", "invalid -engine %q: want goroutine, epoll or auto", *engine)
	}
	var trustedProxies []netip.Prefix
	if *proxyFrom != "" {
		if !*proxyProtocol {
			return usagef("serve", "-proxy-protocol-from needs -proxy-protocol")
		}
		var err error
		if trustedProxies, err = proxied.ParseCIDRs(*proxyFrom); err != nil {
			return usagef("serve", "-proxy-protocol-from: %v", err)
		}
	}
	logger, err := newLogger(std.err, *logFormat, *logLevel)
	if err != nil {
		return &usageError{cmd: "serve", err: err}
	}

	// Sockets from systemd (socket activation) replace -listen and
	// -tls-listen.
	inherited, err := socketsFromSystemd()
	if err != nil {
		return err
	}
	if inherited.empty() && len(listen)+len(tlsListen)+len(udpListen) == 0 {
		listen = addrList{":7007"}
	}
	if !inherited.empty() && len(listen)+len(tlsListen)+len(udpListen) > 0 {
		logger.Warn("serving the sockets from systemd; ignoring -listen, -tls-listen and -udp-listen")
		listen, tlsListen, udpListen = nil, nil, nil
	}
	wantTLS := len(tlsListen)+len(inherited.tls) > 0
	var certs *tlscert.Reloader
	switch {
	case wantTLS && (*tlsCert == "" || *tlsKey == ""):
		inherited.closeAll()
		return usagef("serve", "the socket named %q from systemd needs -tls-cert and -tls-key", tlsSocketName)
	case !wantTLS && (*tlsCert != "" || *tlsKey != ""):
		inherited.closeAll()
		return usagef("serve", "-tls-cert and -tls-key need -tls-listen (or, from systemd, a socket named %q)", tlsSocketName)
	case wantTLS:
		if certs, err = tlscert.Load(*tlsCert, *tlsKey); err != nil {
			inherited.closeAll()
			return err
		}
	}

	// Open every listener before serving on any, so a bad address fails
	// the start instead of leaving a half-started server.
	var listeners []servedListener
	var packets []net.PacketConn
	var adminListener net.Listener
	closeAll := func() {
		for _, sl := range listeners {
			sl.Close()
		}
		for _, pc := range packets {
			pc.Close()
		}
		if adminListener != nil {
			adminListener.Close()
		}
	}
	var proxies []*proxied.Listener // for their rejection counts
	wrap := func(l net.Listener, proto string) servedListener {
		if *proxyProtocol {
			// The PROXY header comes first on the wire, before any TLS.
			pl := proxied.NewListener(l, proxied.Config{Trusted: trustedProxies, Logger: logger})
			proxies = append(proxies, pl)
			l = pl
		}
		if proto == "tls" {
			l = tls.NewListener(l, certs.Config())
		}
		return servedListener{Listener: l, proto: proto}
	}
	for _, l := range inherited.tcp {
		listeners = append(listeners, wrap(l, "tcp"))
	}
	for _, l := range inherited.tls {
		listeners = append(listeners, wrap(l, "tls"))
	}
	// A datagram socket from systemd (ListenDatagram=) is UDP echo that the
	// unit asked for, -udp or not.
	packets = append(packets, inherited.udp...)
	var lc net.ListenConfig
	for _, addr := range listen {
		l, pc, err := listenOn(ctx, addr, *udp)
		if err != nil {
			closeAll()
			return err
		}
		listeners = append(listeners, wrap(l, "tcp"))
		if pc != nil {
			packets = append(packets, pc)
		}
	}
	for _, addr := range tlsListen {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			closeAll()
			return err
		}
		listeners = append(listeners, wrap(l, "tls"))
	}
	for _, addr := range udpListen {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			closeAll()
			return err
		}
		packets = append(packets, pc)
	}
	if *adminAddr != "" {
		if adminListener, err = lc.Listen(ctx, "tcp", *adminAddr); err != nil {
			closeAll()
			return fmt.Errorf("-admin: %w", err)
		}
	}

	// SIGHUP rereads the TLS certificate; without TLS it is logged and
	// ignored rather than ending the process, as it would by default.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	srv := &echo.Server{
		Logger:                  logger,
		Engine:                  *engine,
		MaxConns:                *maxConns,
		MaxConnsPerIP:           *maxPerIP,
		IdleTimeout:             *idleTimeout,
		MaxSessionDuration:      *maxDuration,
		MaxSessionBytes:         *maxBytes,
		UDPAllowPrivilegedPorts: *udpPrivileged,
		UDPSourceRate:           *udpSourceRate,
		UDPGlobalRate:           *udpGlobalRate,
	}
	errc := make(chan error, len(listeners)+len(packets))
	for _, sl := range listeners {
		logger.Info("listening", "proto", sl.proto, "addr", sl.Addr().String())
		// Cancellation of ctx starts the graceful drain below; it must not
		// reach Serve, which would close connections at once.
		go func() { errc <- srv.Serve(context.WithoutCancel(ctx), sl.Listener) }()
	}
	for _, pc := range packets {
		logger.Info("listening", "proto", "udp", "addr", pc.LocalAddr().String())
		go func() { errc <- srv.ServeUDP(context.WithoutCancel(ctx), pc) }()
	}
	var adm *adminServer
	if adminListener != nil {
		h := admin.NewHandler(func() admin.Snapshot { return snapshot(srv, proxies) })
		adm = startAdmin(adminListener, h, logger)
		logger.Info("listening", "proto", "http", "addr", adminListener.Addr().String(), "serves", "/metrics /healthz /readyz")
	}
	// Every listener is open: the kernel queues connections from now on.
	adm.setReady(true)
	defer adm.stop()

	var failed error
	for running := true; running; {
		select {
		case <-hup:
			reload(logger, certs)
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
			logger.Info("shutting down; waiting for open sessions", "timeout", *shutdownTimeout)
			sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
			err := srv.Shutdown(sctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				logger.Warn("shutdown timeout reached; closed the remaining sessions")
			}
			running = false
		}
	}
	// Wait for every Serve call; the one that failed has already returned.
	pending := len(listeners) + len(packets)
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
