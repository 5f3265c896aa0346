package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"github.com/echod/echod/internal/target"
	"github.com/echod/echod/internal/wsclient"
)

// This file is where WebSocket support plugs into send: it routes every
// ws:// and wss:// address here, to the client in internal/wsclient.

// sendWebSocket sends a message or standard input to a ws:// or wss://
// target as one WebSocket message and prints the echo.
func sendWebSocket(ctx context.Context, t target.Target, src io.Reader, o sendOptions, std stdio) error {
	cfg := wsclient.SendConfig{URL: t.URL(), Patience: o.patience, Verify: o.verify}
	if t.Transport == target.WSS {
		tc, err := sendTLSConfig(t, o.caFile, std)
		if err != nil {
			return err
		}
		cfg.TLS = tc
	}
	err := wsclient.Send(ctx, cfg, src, std.out)
	var unreachable *wsclient.DialError
	switch {
	case err == nil:
		return nil
	case interrupted(ctx):
		return fmt.Errorf("%w: send to %s stopped", errInterrupted, t)
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("no complete reply from %s within -timeout %v", t, o.timeout)
	case errors.As(err, &unreachable):
		return err
	}
	return fmt.Errorf("%s: %w", t, err)
}

// sendTLSConfig is send's TLS client configuration for t (tls:// or
// wss://), with a note on standard error when the certificate goes
// unverified.
func sendTLSConfig(t target.Target, caFile string, std stdio) (*tls.Config, error) {
	cfg, err := target.ClientTLS{CAFile: caFile}.Config(t.Host)
	if err != nil {
		return nil, &usageError{cmd: "send", err: err}
	}
	if cfg.InsecureSkipVerify {
		fmt.Fprintf(std.err, "note: not verifying the TLS certificate of %s (give -ca FILE to verify it)\n", t.Addr())
	}
	return cfg, nil
}
