package main

import (
	"context"
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
		o.tls.note(std.err, t, o.tlsCfg)
		cfg.TLS = o.tlsCfg
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
