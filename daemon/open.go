package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/internal/tlscert"
)

// open opens every socket cfg asks for, or takes those systemd passed in,
// before anything is served on any of them.
func open(ctx context.Context, cfg *Config) (_ *daemon, err error) {
	// Sockets from systemd (socket activation) replace Listen, TLSListen,
	// UDPListen, HTTPListen and HTTPSListen.
	inherited, err := socketsFromSystemd()
	if err != nil {
		return nil, err
	}
	listen, tlsListen, udpListen := cfg.Listen, cfg.TLSListen, cfg.UDPListen
	httpListen, httpsListen := cfg.HTTPListen, cfg.HTTPSListen
	named := len(listen) + len(tlsListen) + len(udpListen) + len(httpListen) + len(httpsListen)
	if inherited.empty() && named == 0 {
		listen = []string{DefaultListen}
	}
	if !inherited.empty() && named > 0 {
		cfg.Logger.Warn("serving the sockets from systemd; ignoring -listen, -tls-listen, -udp-listen, -http-listen and -https-listen")
		listen, tlsListen, udpListen, httpListen, httpsListen = nil, nil, nil, nil, nil
	}

	d := &daemon{cfg: cfg, log: cfg.Logger, servers: []server{cfg.Server}}
	defer func() {
		if err != nil {
			inherited.closeAll()
			d.closeAll()
		}
	}()
	if err := d.startBandwidth(); err != nil {
		return nil, err
	}
	wantTLS := len(tlsListen)+len(inherited.tls)+len(httpsListen)+len(inherited.https) > 0
	switch {
	case wantTLS && (cfg.TLSCert == "" || cfg.TLSKey == ""):
		switch {
		case len(inherited.tls) > 0:
			return nil, &ConfigError{fmt.Sprintf("the socket named %q from systemd needs -tls-cert and -tls-key", TLSSocketName)}
		case len(inherited.https) > 0:
			return nil, &ConfigError{fmt.Sprintf("the socket named %q from systemd needs -tls-cert and -tls-key", HTTPSSocketName)}
		case len(httpsListen) > 0:
			return nil, &ConfigError{"-https-listen needs both -tls-cert and -tls-key"}
		}
		return nil, &ConfigError{"-tls-listen needs both -tls-cert and -tls-key"}
	case !wantTLS && (cfg.TLSCert != "" || cfg.TLSKey != ""):
		return nil, &ConfigError{fmt.Sprintf("-tls-cert and -tls-key need -tls-listen or -https-listen (or, from systemd, a socket named %q or %q)", TLSSocketName, HTTPSSocketName)}
	case wantTLS:
		if d.certs, err = tlscert.Load(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, err
		}
	}

	for _, l := range inherited.tcp {
		d.addStream(ctx, l, "tcp")
	}
	for _, l := range inherited.tls {
		d.addStream(ctx, l, "tls")
	}
	// A datagram socket from systemd (ListenDatagram=) is UDP echo that the
	// unit asked for, -udp or not.
	for _, pc := range inherited.udp {
		d.addPacket(ctx, pc)
	}
	for _, l := range inherited.http {
		d.addWeb(l, "http")
	}
	for _, l := range inherited.https {
		d.addWeb(l, "https")
	}
	inherited = inheritedSockets{} // d owns them now

	var lc net.ListenConfig
	for _, addr := range listen {
		l, pc, err := listenPair(ctx, addr, cfg.UDP)
		if err != nil {
			return nil, explain(err, addr, "-listen")
		}
		d.addStream(ctx, l, "tcp")
		if pc != nil {
			d.addPacket(ctx, pc)
		}
	}
	for _, addr := range tlsListen {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, explain(err, addr, "-tls-listen")
		}
		d.addStream(ctx, l, "tls")
	}
	for _, addr := range udpListen {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, explain(err, addr, "-udp-listen")
		}
		d.addPacket(ctx, pc)
	}
	for _, w := range []struct {
		proto, flag string
		addrs       []string
	}{{"http", "-http-listen", httpListen}, {"https", "-https-listen", httpsListen}} {
		for _, addr := range w.addrs {
			l, err := lc.Listen(ctx, "tcp", addr)
			if err != nil {
				return nil, explain(err, addr, w.flag)
			}
			d.addWeb(l, w.proto)
		}
	}
	if cfg.Admin != "" {
		if d.admin, err = lc.Listen(ctx, "tcp", cfg.Admin); err != nil {
			return nil, fmt.Errorf("-admin: %w", explain(err, cfg.Admin, "-admin"))
		}
	}
	return d, nil
}

// addStream serves echo on l, a stream listener of proto tcp or tls. The
// PROXY header comes first on the wire, before any TLS.
func (d *daemon) addStream(ctx context.Context, l net.Listener, proto string) {
	cfg := d.cfg
	l = d.proxied(l)
	if proto == "tls" {
		l = newHandshakeListener(l, d.certs.Config(), cfg.TLSHandshakeTimeout)
	}
	// Cancelling ctx starts the drain, which stops Serve through Shutdown;
	// ctx itself must not reach it.
	sctx := context.WithoutCancel(ctx)
	d.add(endpoint{proto: proto, addr: l.Addr(), close: l.Close,
		serve: func() error { return cfg.Server.Serve(sctx, l) }})
}

// proxied wraps l to read the PROXY header of each connection, with
// -proxy-protocol; without, it returns l.
func (d *daemon) proxied(l net.Listener) net.Listener {
	cfg := d.cfg
	if !cfg.ProxyProtocol {
		return l
	}
	pl := proxied.NewListener(l, proxied.Config{
		Trusted:       cfg.TrustedProxies,
		HeaderTimeout: cfg.ProxyHeaderTimeout,
		PendingPerIP:  cfg.ProxyPendingPerIP,
		// A connection waiting for its header counts against -max-conns
		// and -max-conns-per-ip under the peer's address until the server
		// counts it under the client's.
		Reserve: cfg.Server.Reserve,
		Logger:  cfg.Logger,
	})
	d.proxies = append(d.proxies, pl)
	return pl
}

// addPacket serves UDP echo on pc.
func (d *daemon) addPacket(ctx context.Context, pc net.PacketConn) {
	sctx := context.WithoutCancel(ctx)
	d.add(endpoint{proto: "udp", addr: pc.LocalAddr(), close: pc.Close,
		serve: func() error { return d.cfg.Server.ServeUDP(sctx, pc) }})
}

// listenPair opens the TCP listener for addr and, with udp, a UDP socket on
// the same address and port. When addr asks for any free port (port 0), the
// UDP socket takes the port the TCP listener got, trying again with a new
// one if that port is taken for UDP.
func listenPair(ctx context.Context, addr string, udp bool) (net.Listener, net.PacketConn, error) {
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

// explain adds a hint to the errors a beginner meets when listening on
// addr, which came from flag: a port in use, a privileged port.
func explain(err error, addr, flag string) error {
	_, port, _ := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w: is another echod or server running on port %s? pick another %s port", err, port, flag)
	case errors.Is(err, syscall.EACCES) && perr == nil && n > 0 && n < 1024:
		return fmt.Errorf("%w: ports below 1024 need privileges: pick a port of 1024 or more (such as %s :7007), "+
			"let systemd open it (socket activation, see deploy/systemd), or allow the binary with 'setcap cap_net_bind_service=+ep'", err, flag)
	}
	return err
}
