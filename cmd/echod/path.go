package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/target"
	"github.com/echod/echod/netpath"
)

func runPath(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("path", "echod path [flags] ADDRESS [flags]", std.out)
	var cfg netpath.Config
	fs.DurationVar(&cfg.MaxIdle, "max-idle", netpath.DefaultMaxIdle, "the longest idle time to probe, on connections of their own beside the other measurements (0: no idle probes)")
	fs.DurationVar(&cfg.Duration, "d", netpath.DefaultDuration, "how long each throughput measurement runs (one connection, then two)")
	fs.IntVar(&cfg.Echoes, "n", netpath.DefaultEchoes, "how many small echoes time the round trip")
	fs.IntVar(&cfg.Bulk, "bulk", netpath.DefaultBulk, "how many `bytes` the tampering check echoes and compares")
	fs.DurationVar(&cfg.Patience, "patience", netpath.DefaultPatience, "how long to wait for an echo before taking it as lost")
	fs.StringVar(&cfg.InfoURL, "info", "", "echod's connection info `URL` (http://HOST:PORT"+netpath.InfoPath+" on its web echo), for what echod sees of this client; tried by default for ws:// and wss://")
	tlsf := addTLSFlags(fs)
	timeout := fs.Duration("timeout", 10*time.Minute, "give up on the whole run after this long (0: never)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	simulate := fs.String("simulate", "", "measure through an in-process proxy in front of ADDRESS that behaves like `PATH`, such as delay=150ms,jitter=30ms,rate=1000000,segment=536,half-close=close,idle=30s,tamper=flip@600 (see docs/path.md)")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(std.out, "\nADDRESS is HOST:PORT, HOST PORT, or tcp://, udp://, tls://, ws:// or wss:// HOST:PORT.\n"+
			"Each finding is one line: connect, round trip, throughput and its limit, half-close,\n"+
			"idle timeout, tampering and segments (datagrams for UDP), TLS, and what echod sees.\n"+
			"See docs/path.md for how to read them.\n")
	}
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	tgt, used, err := target.FromArgs(positional)
	if err != nil {
		return &usageError{cmd: "path", err: err}
	}
	if used < len(positional) {
		return usagef("path", "unexpected argument %q", positional[used])
	}
	cfg.Target = tgt
	switch {
	case cfg.MaxIdle < 0:
		return usagef("path", "-max-idle must not be negative, got %v", cfg.MaxIdle)
	case cfg.MaxIdle == 0:
		cfg.MaxIdle = -1 // no probes; the Config's zero is the default
	case cfg.MaxIdle < time.Second:
		return usagef("path", "-max-idle must be at least 1s, got %v", cfg.MaxIdle)
	}
	if cfg.Duration < 100*time.Millisecond || cfg.Duration > time.Hour {
		return usagef("path", "-d must be from 100ms to 1h, got %v", cfg.Duration)
	}
	if cfg.Echoes < 1 || cfg.Echoes > 100000 {
		return usagef("path", "-n must be from 1 to 100000, got %d", cfg.Echoes)
	}
	if cfg.Bulk < 1 || cfg.Bulk > 64<<20 {
		return usagef("path", "-bulk must be from 1 to %d bytes (it is held in memory twice), got %d", 64<<20, cfg.Bulk)
	}
	if cfg.Patience <= 0 {
		return usagef("path", "-patience must be positive, got %v", cfg.Patience)
	}
	if *timeout < 0 {
		return usagef("path", "-timeout must not be negative, got %v", *timeout)
	}
	if *timeout > 0 && cfg.MaxIdle >= *timeout {
		return usagef("path", "-max-idle %v would not finish within -timeout %v: raise -timeout", cfg.MaxIdle, *timeout)
	}
	tc, err := tlsf.config("path", tgt)
	if err != nil {
		return err
	}
	cfg.TLS = tc
	if cfg.InfoURL != "" {
		if u, err := url.Parse(cfg.InfoURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return usagef("path", "invalid -info %q: want http://HOST:PORT%s", cfg.InfoURL, netpath.InfoPath)
		}
	}
	var sim netsim.Path
	if *simulate != "" {
		if sim, err = netsim.ParsePath(*simulate); err != nil {
			return usagef("path", "invalid -simulate: %v", err)
		}
	}

	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	if *simulate != "" {
		stop, err := throughSimulated(ctx, &cfg, sim)
		if err != nil {
			return err
		}
		defer stop()
		if !*asJSON {
			fmt.Fprintf(std.out, "simulating %s: an in-process proxy at %s in front of %s\n", sim, cfg.Target.Addr(), tgt)
		}
	}
	if !*asJSON {
		fmt.Fprintf(std.out, "path to %s\n", cfg.Target)
		cfg.Progress = func(f netpath.Finding) { f.WriteText(std.out) }
	}
	rep, err := netpath.Run(ctx, cfg)
	switch {
	case errors.Is(err, netpath.ErrUnreachable):
		return &usageError{err: err}
	case errors.Is(err, netpath.ErrNoEcho):
		// The report says so, in its round trip finding.
		if *asJSON {
			rep.WriteJSON(std.out)
		}
		return reported()
	case err != nil && interrupted(ctx):
		return fmt.Errorf("%w after %d findings", errInterrupted, len(rep.Findings))
	case err != nil:
		return fmt.Errorf("path to %s: %w", tgt, err)
	}
	if *asJSON {
		return rep.WriteJSON(std.out)
	}
	return nil
}

// throughSimulated starts a netsim proxy to cfg's target that behaves like
// path, and points cfg at it; stop closes the proxy.
func throughSimulated(ctx context.Context, cfg *netpath.Config, path netsim.Path) (stop func() error, err error) {
	stop, err = simulate(ctx, &cfg.Target, cfg.TLS, path)
	var nobody *nothingBehindError
	if errors.As(err, &nobody) {
		return nil, &usageError{err: fmt.Errorf("%w: %v", netpath.ErrUnreachable, nobody)}
	}
	return stop, err
}
