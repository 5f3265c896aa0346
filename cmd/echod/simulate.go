package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/target"
)

// nothingBehindError is a simulated path in front of an address where
// nothing accepts connections.
type nothingBehindError struct {
	addr string
	err  error
}

func (e *nothingBehindError) Error() string { return fmt.Sprintf("connect to %s: %v", e.addr, e.err) }
func (e *nothingBehindError) Unwrap() error { return e.err }

// simulate starts a netsim proxy to tgt that behaves like path, for
// -simulate, and points tgt at it (and tlsCfg, if not nil, still at the
// server's name); stop closes the proxy.
func simulate(ctx context.Context, tgt *target.Target, tlsCfg *tls.Config, path netsim.Path) (stop func() error, err error) {
	to, err := target.Resolve(ctx, tgt.Addr())
	if err != nil {
		return nil, err
	}
	start := netsim.Start
	if tgt.Transport == target.UDP {
		start = netsim.StartUDP
	} else {
		// The proxy would accept and then close: say plainly that
		// nothing is behind it.
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", to)
		if err != nil {
			return nil, &nothingBehindError{addr: to, err: err}
		}
		c.Close()
	}
	p, err := start(ctx, to, path)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil && tlsCfg.ServerName == "" {
		tlsCfg.ServerName = tgt.Host // the certificate names the server, not the proxy
	}
	host, port, _ := net.SplitHostPort(p.Addr())
	tgt.Host, tgt.Port = host, port
	return p.Close, nil
}
