package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/daemon"
	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/web"
)

// runServe is echod serve: flags in, daemon.Config out, daemon.Run.
func runServe(ctx context.Context, args []string, std stdio) error {
	cfg, err := parseServe(args, std)
	if err != nil {
		return err
	}
	// SIGHUP rereads the TLS certificate; without TLS it is logged and
	// ignored rather than ending the process, as it would by default.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg.Reload = hup
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = -1 // the flag's 0 closes at once; Config's means the default
	}

	err = daemon.Run(ctx, *cfg)
	if ce, ok := err.(*daemon.ConfigError); ok {
		return &usageError{cmd: "serve", err: ce}
	}
	return err
}

// parseServe parses and checks the flags of echod serve.
func parseServe(args []string, std stdio) (_ *daemon.Config, err error) {
	cfg := &daemon.Config{Server: &echo.Server{}}
	srv := cfg.Server
	fs := newFlagSet("serve", "echod serve [flags]", std.out)
	fs.Var((*addrList)(&cfg.Listen), "listen", "serve TCP echo on `HOST:PORT`; repeat for more addresses (default :7007 when no -tls-listen, -udp-listen, -http-listen or -https-listen is given either)")
	fs.Var((*addrList)(&cfg.TLSListen), "tls-listen", "serve TLS echo on `HOST:PORT`; repeat for more addresses (needs -tls-cert and -tls-key)")
	fs.Var((*addrList)(&cfg.HTTPListen), "http-listen", "serve the web echo on `HOST:PORT`: WebSocket echo, HTTP request echo, and a page at / to try it in a browser; repeat for more addresses (default off)")
	fs.Var((*addrList)(&cfg.HTTPSListen), "https-listen", "serve the web echo over HTTPS (and HTTP/2) on `HOST:PORT`; repeat for more addresses (needs -tls-cert and -tls-key)")
	wsMax := fs.Int64("ws-max-message", web.DefaultMaxMessage, "largest WebSocket message echoed, in `bytes`; a larger one closes the connection with 1009")
	httpMaxBody := fs.Int64("http-max-body", web.DefaultMaxBody, "most `bytes` of an HTTP request's body the request echo includes")
	httpBodyMemory := fs.Int64("http-body-memory", web.DefaultBodyMemory, "most `bytes` the request echoes hold at once: bodies as they arrive, headers until answered; one address may hold half, one connection a sixteenth; a body past it is cut, and its echo says so")
	httpMaxRequests := fs.Int("http-max-requests-per-ip", web.DefaultMaxRequestsPerAddr, "most HTTP `requests` in flight at once from one address (IPv6: one /64), HTTP/2 streams included; more are answered 429; 0: no limit")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "TLS certificate chain `file` (PEM) for -tls-listen and -https-listen; reread on SIGHUP")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "TLS private key `file` (PEM) for -tls-listen and -https-listen; reread on SIGHUP")
	fs.BoolVar(&cfg.ProxyProtocol, "proxy-protocol", false, "expect a PROXY protocol (v1 or v2) header on every TCP and TLS connection, and use the client address it gives; connections without one are rejected")
	fs.DurationVar(&cfg.ProxyHeaderTimeout, "proxy-header-timeout", daemon.DefaultProxyHeaderTimeout, "with -proxy-protocol, how long a connection may take to send its PROXY header")
	fs.IntVar(&cfg.ProxyPendingPerIP, "proxy-pending-per-ip", daemon.DefaultProxyPendingPerIP, "with -proxy-protocol, most `connections` from one address (IPv6: one /64) waiting for their PROXY header at once; more are reset (proxies named in -proxy-protocol-from are exempt)")
	fs.DurationVar(&cfg.TLSHandshakeTimeout, "tls-handshake-timeout", daemon.DefaultTLSHandshakeTimeout, "how long a TLS handshake may take before the connection is closed")
	proxyFrom := fs.String("proxy-protocol-from", "", "with -proxy-protocol, accept connections only from these proxies: comma-separated `CIDRs` or addresses (default: any peer)")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug (a line per connection), info, warn or error")
	fs.StringVar(&srv.Engine, "engine", echo.EngineAuto, "how connections are served: `engine` auto (epoll on Linux), goroutine (one goroutine each, portable) or epoll (Linux event loops)")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", daemon.DefaultShutdownTimeout, "on SIGINT or SIGTERM, how long open sessions may take to finish before they are closed")
	fs.Var((*addrList)(&cfg.UDPListen), "udp-listen", "serve UDP echo on `HOST:PORT` alone, without TCP; repeat for more (fly.io: fly-global-services:PORT)")
	fs.StringVar(&cfg.Admin, "admin", "", "serve Prometheus /metrics, /healthz and /readyz over HTTP on `HOST:PORT`; keep it private (default off)")
	fs.BoolVar(&cfg.UDP, "udp", false, "also serve UDP echo on every -listen address (off by default: UDP echo is a reflection and loop vector)")
	fs.IntVar(&srv.MaxConns, "max-conns", daemon.DefaultMaxConns(), "most TCP `connections` open at once; beyond it new ones are reset; its default comes from the open-file limit; 0: no limit")
	fs.IntVar(&srv.MaxConnsPerIP, "max-conns-per-ip", 0, "most TCP `connections` open at once from one address (IPv6: one /64); 0: no limit")
	fs.DurationVar(&srv.IdleTimeout, "idle-timeout", daemon.DefaultIdleTimeout, "close a TCP connection or WebSocket with no traffic either way (WebSocket pings do not count) for this `duration`; 0: never")
	fs.DurationVar(&srv.MaxSessionDuration, "max-session-duration", 0, "close a TCP connection or WebSocket this `duration` after it opened; 0: never")
	fs.Int64Var(&srv.MaxSessionBytes, "max-session-bytes", 0, "close a TCP connection or WebSocket once it has sent this many `bytes`, all echoed (a WebSocket's messages whole); 0: no limit")
	fs.BoolVar(&srv.UDPAllowPrivilegedPorts, "udp-allow-privileged-ports", false, "answer UDP datagrams from source ports below 1024 (where echo and chargen loops start)")
	fs.IntVar(&srv.UDPSourceRate, "udp-source-rate", daemon.DefaultUDPSourceRate, "most UDP `datagrams` per second answered for one source address (IPv6: one /64); 0: no limit")
	fs.IntVar(&srv.UDPGlobalRate, "udp-global-rate", daemon.DefaultUDPGlobalRate, "most UDP `datagrams` per second answered in all; 0: no limit")
	bw := &cfg.Bandwidth
	fs.TextVar(&bw.PerConn, "rate-per-conn", bandwidth.Rate(0), "most each connection (TCP, TLS, WebSocket, HTTP) is sent, in `bytes/s` with a unit: 1MB/s, 512KiB (per second implied); 0: no limit")
	fs.TextVar(&bw.PerAddr, "rate-per-ip", bandwidth.Rate(0), "most one address (IPv6: one /64) is sent over all its connections, requests and UDP datagrams, in `bytes/s` with a unit: 1MB/s; reading slows down to match (UDP past it is dropped); 0: no limit")
	fs.TextVar(&bw.Egress, "egress-budget", bandwidth.Budget{}, "most sent in all per period, as `SIZE/PERIOD`: 500GB/30d, 10GiB/1d; past 90% all echo slows to the budget's average rate, and once spent new sessions are refused until the period renews; 0: none")
	public := fs.Bool("public", false, "turn on every guard for clients on the public internet, each at the value docs/limits.md gives unless set explicitly: "+publicSummary())
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("serve", "unexpected argument %q", fs.Arg(0))
	}
	var applied []any
	if *public {
		if applied, err = applyPublic(fs); err != nil {
			return nil, err
		}
	}
	if err := checkLimits(cfg); err != nil {
		return nil, err
	}
	if len(cfg.TLSListen) > 0 && (cfg.TLSCert == "" || cfg.TLSKey == "") {
		return nil, usagef("serve", "-tls-listen needs both -tls-cert and -tls-key")
	}
	if len(cfg.HTTPSListen) > 0 && (cfg.TLSCert == "" || cfg.TLSKey == "") {
		return nil, usagef("serve", "-https-listen needs both -tls-cert and -tls-key")
	}
	for _, n := range []struct {
		name string
		v    int64
	}{{"ws-max-message", *wsMax}, {"http-max-body", *httpMaxBody}, {"http-body-memory", *httpBodyMemory}} {
		if n.v <= 0 {
			return nil, usagef("serve", "-%s must be at least 1 byte, got %d", n.name, n.v)
		}
	}
	if *httpMaxRequests < 0 {
		return nil, usagef("serve", "-http-max-requests-per-ip must not be negative, got %d (0 means no limit)", *httpMaxRequests)
	}
	if *httpMaxBody > web.MostBody {
		return nil, usagef("serve", "-http-max-body must be at most %d (1 GiB), got %d: the body is held in memory", web.MostBody, *httpMaxBody)
	}
	if cfg.Admin != "" {
		if _, _, err := net.SplitHostPort(cfg.Admin); err != nil {
			return nil, usagef("serve", "invalid -admin %q: want HOST:PORT, such as 127.0.0.1:9090: %v", cfg.Admin, err)
		}
	}
	switch srv.Engine {
	case echo.EngineAuto, echo.EngineGoroutine, echo.EngineEpoll:
	default:
		return nil, usagef("serve", "invalid -engine %q: want goroutine, epoll or auto", srv.Engine)
	}
	var needsProxy error
	fs.Visit(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, "proxy-") && f.Name != "proxy-protocol" && !cfg.ProxyProtocol && needsProxy == nil {
			needsProxy = usagef("serve", "-%s needs -proxy-protocol", f.Name)
		}
	})
	if needsProxy != nil {
		return nil, needsProxy
	}
	if *proxyFrom != "" {
		if cfg.TrustedProxies, err = proxied.ParseCIDRs(*proxyFrom); err != nil {
			return nil, usagef("serve", "-proxy-protocol-from: %v", err)
		}
	}
	if cfg.Logger, err = newLogger(std.err, *logFormat, *logLevel); err != nil {
		return nil, &usageError{cmd: "serve", err: err}
	}
	if *public {
		cfg.Logger.Info("public profile", applied...)
	}
	srv.Logger = cfg.Logger
	maxRequests := *httpMaxRequests
	if maxRequests == 0 {
		maxRequests = -1 // no limit, to web.Handler
	}
	cfg.Web = &web.Handler{MaxMessage: *wsMax, MaxBody: *httpMaxBody, BodyMemory: *httpBodyMemory,
		MaxRequestsPerAddr: maxRequests, IdleTimeout: srv.IdleTimeout, Logger: cfg.Logger,
		MaxSessionDuration: srv.MaxSessionDuration, MaxSessionBytes: srv.MaxSessionBytes}
	return cfg, nil
}

// publicProfile is what -public sets, flag by flag, where the command line
// does not: the guards for clients that reach echod straight from the
// internet. docs/limits.md says why each value, and what it costs.
func publicProfile() []struct{ flag, value string } {
	return []struct{ flag, value string }{
		{"max-conns-per-ip", "50"},
		{"max-session-duration", "1h"},
		{"max-session-bytes", "1000000000"},
		{"rate-per-ip", "1MB/s"},
		{"egress-budget", "100GB/30d"},
	}
}

func publicSummary() string {
	var b strings.Builder
	for i, p := range publicProfile() {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "-%s %s", p.flag, p.value)
	}
	return b.String()
}

// applyPublic sets the flags of the public profile that were not given,
// and returns them as log attributes.
func applyPublic(fs *flag.FlagSet) ([]any, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var applied []any
	for _, p := range publicProfile() {
		if given[p.flag] {
			applied = append(applied, p.flag, fs.Lookup(p.flag).Value.String()+" (given)")
			continue
		}
		if err := fs.Set(p.flag, p.value); err != nil {
			return nil, fmt.Errorf("-public: set -%s: %w", p.flag, err)
		}
		applied = append(applied, p.flag, p.value)
	}
	return applied, nil
}

// maxDuration bounds every duration flag: longer is a mistake (a year is
// 8760h), and far longer overflows the arithmetic of deadlines.
const maxDuration = 365 * 24 * time.Hour

// checkLimits refuses negative, zero where a timeout must end, and absurdly
// large values, naming the flag.
func checkLimits(cfg *daemon.Config) error {
	srv := cfg.Server
	for _, d := range []struct {
		name   string
		v      time.Duration
		zeroOK bool // 0 means never, or at once
	}{
		{"shutdown-timeout", cfg.ShutdownTimeout, true},
		{"idle-timeout", srv.IdleTimeout, true},
		{"max-session-duration", srv.MaxSessionDuration, true},
		{"proxy-header-timeout", cfg.ProxyHeaderTimeout, false},
		{"tls-handshake-timeout", cfg.TLSHandshakeTimeout, false},
	} {
		switch {
		case d.v < 0:
			return usagef("serve", "-%s must not be negative, got %v", d.name, d.v)
		case d.v == 0 && !d.zeroOK:
			return usagef("serve", "-%s must be more than 0: a peer may not keep it waiting forever", d.name)
		case d.v > maxDuration:
			return usagef("serve", "-%s must be at most %v (a year), got %v", d.name, maxDuration, d.v)
		}
	}
	for _, n := range []struct {
		name   string
		v      int64
		zeroOK bool // 0 means no limit
	}{
		{"max-conns", int64(srv.MaxConns), true},
		{"max-conns-per-ip", int64(srv.MaxConnsPerIP), true},
		{"max-session-bytes", srv.MaxSessionBytes, true},
		{"udp-source-rate", int64(srv.UDPSourceRate), true},
		{"udp-global-rate", int64(srv.UDPGlobalRate), true},
		{"proxy-pending-per-ip", int64(cfg.ProxyPendingPerIP), false},
	} {
		switch {
		case n.v < 0 && n.zeroOK:
			return usagef("serve", "-%s must not be negative, got %d (0 means no limit)", n.name, n.v)
		case n.v <= 0 && !n.zeroOK:
			return usagef("serve", "-%s must be at least 1, got %d", n.name, n.v)
		}
	}
	return nil
}

// addrList is a repeatable HOST:PORT flag.
type addrList []string

func (a *addrList) String() string { return strings.Join(*a, ",") }

func (a *addrList) Set(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, such as 127.0.0.1:7007 or [::1]:7007: %w", err)
	}
	// A port out of range would otherwise pass as a usage and fail only
	// when listening, as a runtime error (exit 1).
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("want HOST:PORT with a port from 0 to 65535, such as 127.0.0.1:7007: invalid port %q", port)
	}
	*a = append(*a, s)
	return nil
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
