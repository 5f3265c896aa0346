package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/echod/echod/echo"
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
	fs.Var(&listen, "listen", "serve TCP echo on `HOST:PORT`; repeat for more addresses (default :7007)")
	logFormat := fs.String("log-format", "text", "log `format`: text or json")
	logLevel := fs.String("log-level", "info", "log `level`: debug (a line per connection), info, warn or error")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "on SIGINT or SIGTERM, how long open sessions may take to finish before they are closed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("serve", "unexpected argument %q", fs.Arg(0))
	}
	if *shutdownTimeout < 0 {
		return usagef("serve", "-shutdown-timeout must not be negative, got %v", *shutdownTimeout)
	}
	logger, err := newLogger(std.err, *logFormat, *logLevel)
	if err != nil {
		return &usageError{cmd: "serve", err: err}
	}
	if len(listen) == 0 {
		listen = addrList{":7007"}
	}

	// Open every listener before serving on any, so a bad address fails
	// the start instead of leaving a half-started server.
	var listeners []net.Listener
	var lc net.ListenConfig
	for _, addr := range listen {
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
		listeners = append(listeners, l)
	}

	srv := &echo.Server{Logger: logger}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		logger.Info("listening", "proto", "tcp", "addr", l.Addr().String())
		// Cancellation of ctx starts the graceful drain below; it must not
		// reach Serve, which would close connections at once.
		go func() { errc <- srv.Serve(context.WithoutCancel(ctx), l) }()
	}

	var failed error
	select {
	case err := <-errc:
		failed = err
		logger.Error("listener failed; stopping", "err", err)
		srv.Close()
	case <-ctx.Done():
		logger.Info("shutting down; waiting for open sessions", "timeout", *shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
		err := srv.Shutdown(sctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			logger.Warn("shutdown timeout reached; closed the remaining sessions")
		}
	}
	// Wait for every Serve call; the one that failed has already returned.
	pending := len(listeners)
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
