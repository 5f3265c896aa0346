// Command wsload is the WebSocket load client of bench/ws-compare.sh: it
// measures any WebSocket echo server (echod's web echo, gorilla/websocket,
// nbio) the same way, and checks every echo byte for byte.
//
//	wsload -mode idle -c 5000 -pid PID ws://HOST:PORT/
//	wsload -mode pingpong -c 100 -size 512 -d 2s ws://HOST:PORT/
//
// idle opens -c WebSockets, sends one -size binary message on each and
// checks its echo, holds them all for -settle, and reports the growth of
// the server's resident memory (VmRSS in /proc/PID/status) per connection.
// pingpong runs -c connections each sending a -size binary message and
// waiting for its echo, over and over, and reports round trips per second
// in the -d after -warmup (and, with -pid, the server's CPU per round trip).
//
// The result is one JSON line on standard output; a sentence for people
// goes to standard error. Exit status: 0 when every echo matched, 1 when
// one did not or a connection failed (the result still says what was
// measured), 2 for a usage error, 130 when interrupted.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/echod/echod/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	var ue *usageError
	switch {
	case err == nil:
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "wsload: %v\n", err)
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "wsload: %v\n", err)
		if interrupted {
			os.Exit(130)
		}
		os.Exit(1)
	}
}

// usageError is a mistake on the command line.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }

// config is what the command line asks for.
type config struct {
	mode    string
	url     *url.URL
	conns   int
	size    int
	dur     time.Duration
	warmup  time.Duration
	settle  time.Duration
	timeout time.Duration
	pid     int
	sources []netip.Addr
}

// Bounds on the flags, so that a slip of the finger is an error rather
// than a run that exhausts the machine.
const (
	maxConns = 1_000_000
	maxSize  = 16 << 20
)

func parse(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("wsload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := &config{}
	fs.StringVar(&cfg.mode, "mode", "pingpong", "`mode`: pingpong (round trips per second) or idle (server memory per held connection)")
	fs.IntVar(&cfg.conns, "c", 0, "`connections` (default 1 for pingpong, 5000 for idle)")
	fs.IntVar(&cfg.size, "size", 64, "binary message size in `bytes`")
	fs.DurationVar(&cfg.dur, "d", 2*time.Second, "pingpong: how long to measure")
	fs.DurationVar(&cfg.warmup, "warmup", 500*time.Millisecond, "pingpong: how long to run before measuring")
	fs.DurationVar(&cfg.settle, "settle", 2*time.Second, "idle: how long to hold the connections before reading the server's memory")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "how long a connection, its upgrade or an echo may take")
	fs.IntVar(&cfg.pid, "pid", 0, "the server's `PID`, to read its memory (idle, required) and CPU time (pingpong) from /proc")
	source := fs.String("source", "", "local `addresses` to connect from in turn, as 127.0.0.1-127.0.0.8 or a comma-separated list (default: the kernel's choice)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wsload [flags] ws://HOST:PORT/PATH")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &usageError{err}
	}
	bad := func(format string, a ...any) (*config, error) {
		return nil, &usageError{fmt.Errorf(format, a...)}
	}
	if fs.NArg() != 1 {
		return bad("want one ws://HOST:PORT/PATH, got %d arguments", fs.NArg())
	}
	raw := fs.Arg(0)
	if !strings.Contains(raw, "://") {
		raw = "ws://" + raw + "/"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return bad("invalid URL %q: %v", fs.Arg(0), err)
	case u.Scheme != "ws":
		return bad("invalid URL %q: wsload measures ws://HOST:PORT/PATH (no TLS)", fs.Arg(0))
	case u.Port() == "" || u.Hostname() == "":
		return bad("invalid URL %q: want ws://HOST:PORT/PATH", fs.Arg(0))
	}
	cfg.url = u
	switch cfg.mode {
	case "pingpong":
		if cfg.conns == 0 {
			cfg.conns = 1
		}
		if cfg.dur <= 0 || cfg.warmup < 0 {
			return bad("-d must be above 0 and -warmup not below 0")
		}
	case "idle":
		if cfg.conns == 0 {
			cfg.conns = 5000
		}
		if cfg.pid <= 0 {
			return bad("-mode idle needs -pid, the server's process id, to read its memory")
		}
		if cfg.settle < 0 {
			return bad("-settle must not be below 0")
		}
	default:
		return bad("unknown -mode %q: want pingpong or idle", cfg.mode)
	}
	if cfg.conns < 1 || cfg.conns > maxConns {
		return bad("-c %d: want 1 to %d connections", cfg.conns, maxConns)
	}
	if cfg.size < 1 || cfg.size > maxSize {
		return bad("-size %d: want 1 to %d bytes", cfg.size, maxSize)
	}
	if cfg.timeout <= 0 {
		return bad("-timeout must be above 0")
	}
	if *source != "" {
		if cfg.sources, err = bench.ParseSources(*source); err != nil {
			return bad("-source: %v", err)
		}
	}
	return cfg, nil
}

// result is what one run measured, printed as one JSON line.
type result struct {
	Mode  string `json:"mode"`
	URL   string `json:"url"`
	Conns int    `json:"conns"`
	Size  int    `json:"size"`

	// pingpong
	Seconds          float64 `json:"seconds,omitempty"`
	RoundTrips       int64   `json:"round_trips,omitempty"`
	RoundTripsPerSec float64 `json:"round_trips_per_sec,omitempty"`
	// ServerCPUPerRoundTripNs is the server's user and system time over
	// the measured window divided by its round trips (with -pid).
	ServerCPUPerRoundTripNs float64 `json:"server_cpu_per_round_trip_ns,omitempty"`

	// idle
	Open       int     `json:"open,omitempty"`         // connections that upgraded and echoed
	RSSBefore  int64   `json:"rss_before,omitempty"`   // server VmRSS in bytes before the first connection
	RSSAfter   int64   `json:"rss_after,omitempty"`    // and after -settle with all held
	RSSPerConn float64 `json:"rss_per_conn,omitempty"` // (after - before) / open

	Mismatches    int64  `json:"mismatches"`
	Errors        int64  `json:"errors"`
	FirstMismatch string `json:"first_mismatch,omitempty"`
	FirstError    string `json:"first_error,omitempty"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	var res *result
	if cfg.mode == "idle" {
		res, err = idle(ctx, cfg)
	} else {
		res, err = pingpong(ctx, cfg)
	}
	if err != nil {
		return err
	}
	line, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode the result: %w", err)
	}
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	fmt.Fprintln(stderr, res.summary())
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case res.Mismatches == 1:
		return fmt.Errorf("an echo differed from what was sent: %s", res.FirstMismatch)
	case res.Mismatches > 1:
		return fmt.Errorf("%d echoes differed from what was sent; the first: %s", res.Mismatches, res.FirstMismatch)
	case res.Errors == 1:
		return fmt.Errorf("a connection failed: %s", res.FirstError)
	case res.Errors > 1:
		return fmt.Errorf("%d connections failed; the first: %s", res.Errors, res.FirstError)
	case res.Mode == "pingpong" && res.RoundTrips == 0:
		return errors.New("no round trip completed in the measured window")
	}
	return nil
}

// summary is the result in a sentence.
func (r *result) summary() string {
	var s string
	switch {
	case r.Mode == "idle" && r.Open == 0:
		s = fmt.Sprintf("%s: none of %d WebSockets opened", r.URL, r.Conns)
	case r.Mode == "idle":
		s = fmt.Sprintf("%s: %d of %d WebSockets open after one %d-byte echo each; server resident memory %.1f MiB -> %.1f MiB, %.0f bytes (%.2f KiB) per connection",
			r.URL, r.Open, r.Conns, r.Size, float64(r.RSSBefore)/(1<<20), float64(r.RSSAfter)/(1<<20), r.RSSPerConn, r.RSSPerConn/1024)
	default:
		s = fmt.Sprintf("%s: %d connections x %d-byte binary messages: %d round trips in %.2fs, %.0f/s",
			r.URL, r.Conns, r.Size, r.RoundTrips, r.Seconds, r.RoundTripsPerSec)
		if r.ServerCPUPerRoundTripNs > 0 {
			s += fmt.Sprintf(", server CPU %.1f µs per round trip", r.ServerCPUPerRoundTripNs/1000)
		}
	}
	if r.Mismatches > 0 || r.Errors > 0 {
		s += fmt.Sprintf("; %d mismatches, %d errors", r.Mismatches, r.Errors)
	}
	return s
}
