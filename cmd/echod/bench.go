package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/echod/echod/bench"
	"github.com/echod/echod/internal/target"
)

func runBench(ctx context.Context, args []string, std stdio) error {
	if len(args) > 0 {
		switch args[0] {
		case "merge":
			return runBenchMerge(ctx, args[1:], std)
		case "report":
			return runBenchReport(ctx, args[1:], std)
		}
	}
	fs := newFlagSet("bench", "echod bench [flags] ADDRESS [flags]", std.out)
	mode := fs.String("mode", "pingpong", "`mode`: pingpong, bulk, cycle, idle or udp (the default for a udp:// address)")
	conns := fs.Int("c", 1, "how many `connections` to use (sockets for udp; sessions at once for cycle)")
	depth := fs.Int("depth", 1, "messages in flight per connection (pingpong, udp)")
	size := fs.Int("size", 0, "`bytes` per message, session (cycle) or write (bulk); 0: 64, or 1024 for cycle, 32768 for bulk")
	duration := fs.Duration("d", 0, "how long to measure, or to hold the connections for idle (default 10s unless -n is given)")
	count := fs.Int64("n", 0, "stop after this many measured messages, sessions or (bulk) bytes; 0: no count")
	warmup := fs.Duration("warmup", time.Second, "run this long before measuring; excluded from the figures")
	rate := fs.String("rate", "", "pingpong: send `N` messages per second in all, on schedule, and measure latency from the scheduled and the actual send (default, or 0: as fast as echoes come back); FROM:TO ramps over -d, N,N,... runs steps of -d each")
	findMax := fs.Bool("find-max-rate", false, "pingpong: search for the highest rate that keeps -max-p99 (and any -max-p50, -max-p99.9, -max-errors), in steps of -d from -rate (default 1000)")
	searchSteps := fs.Int("find-max-steps", bench.DefaultSearchSteps, "with -find-max-rate: run at most `N` steps")
	timeout := fs.Duration("timeout", 5*time.Second, "for one connect or one reply, before it counts as an error")
	sources := fs.String("source", "", "local `addresses` to connect from, in turn: A,B,... or FIRST-LAST")
	pid := fs.Int("pid", 0, "`PID` of a local server: report its CPU time per operation and memory")
	wsType := fs.String("ws-type", string(bench.BinaryMessages), "for ws:// and wss://: the WebSocket message `type`: binary, text (printable bytes) or alternate")
	tlsf := addTLSFlags(fs)
	// What to do with the result, and running as one of several shards.
	out := addReportFlags(fs)
	shard := addShardFlags(fs)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(std.out, "\nADDRESS is HOST:PORT, HOST PORT, tcp://HOST:PORT, tls://HOST:PORT, ws://HOST:PORT/PATH,\nwss://HOST:PORT/PATH (each message one WebSocket message), or udp://HOST:PORT (-mode udp).\n")
		fmt.Fprint(std.out, "\n  echod bench merge [flags] FILE...        merge shards' -json results (- reads standard input)\n")
		fmt.Fprint(std.out, "  echod bench report -html FILE RESULT...  one HTML report of several -json results\n")
	}
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	tgt, used, err := target.FromArgs(positional)
	if err != nil {
		return &usageError{cmd: "bench", err: err}
	}
	if used < len(positional) {
		return usagef("bench", "unexpected argument %q", positional[used])
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch tgt.Transport {
	case target.UDP:
		if set["mode"] && *mode != string(bench.UDP) {
			return usagef("bench", "-mode %s is for TCP; %s takes -mode udp", *mode, tgt)
		}
		*mode = string(bench.UDP)
	case target.TLS, target.WS, target.WSS:
		if *mode == string(bench.UDP) {
			return usagef("bench", "-mode udp is for udp:// addresses; %s takes pingpong, bulk, cycle or idle", tgt)
		}
	}
	if set["ws-type"] && *wsType == "" {
		return usagef("bench", "-ws-type wants binary, text or alternate")
	}
	if set["ws-type"] && !tgt.IsWebSocket() {
		return usagef("bench", "-ws-type applies to ws:// and wss:// addresses, not %s", tgt)
	}
	tlsConfig, err := tlsf.config("bench", tgt)
	if err != nil {
		return err
	}
	cfg := bench.Config{
		Transport: tgt.Transport,
		Path:      tgt.Path,
		TLS:       tlsConfig,
		Addr:      tgt.Addr(),
		Mode:      bench.Mode(*mode),
		Conns:     *conns,
		Depth:     *depth,
		Size:      *size,
		Duration:  *duration,
		Count:     *count,
		Warmup:    *warmup,
		Timeout:   *timeout,
		PID:       *pid,
	}
	switch tgt.Transport {
	case target.TCP, target.UDP:
		cfg.Transport = "" // -mode says which
	case target.WS, target.WSS:
		cfg.MessageType = bench.MessageType(*wsType)
	}
	// Zero means "the default" to bench.Config; on the command line it is
	// a mistake.
	switch {
	case *conns < 1:
		return usagef("bench", "-c must be at least 1, got %d", *conns)
	case *depth < 1:
		return usagef("bench", "-depth must be at least 1, got %d", *depth)
	case *timeout == 0:
		return usagef("bench", "-timeout must be positive")
	}
	if *rate != "" {
		if cfg.Rate, cfg.RampTo, cfg.Steps, err = bench.ParseRate(*rate); err != nil {
			return usagef("bench", "-rate: %v", err)
		}
	}
	scheduled := cfg.Rate > 0 || len(cfg.Steps) > 0 || *findMax
	switch {
	case scheduled && *size > 0 && *size < bench.HeaderSize:
		return usagef("bench", "-size %d is too small for -rate: each message starts with its sequence number and scheduled time, %d bytes; give -size %d or more", *size, bench.HeaderSize, bench.HeaderSize)
	case (cfg.RampTo > 0 || len(cfg.Steps) > 0) && *count > 0:
		return usagef("bench", "-rate %s runs for -d (each step for -d); -n does not apply", *rate)
	}
	if *sources != "" {
		s, err := bench.ParseSources(*sources)
		if err != nil {
			return usagef("bench", "-source: %v", err)
		}
		cfg.Sources = s
	}
	if err := out.check(); err != nil {
		return usagef("bench", "%v", err)
	}
	if (out.th.Latency() || out.hgrm != "") && cfg.Mode == bench.Bulk {
		return usagef("bench", "bulk measures no latency: -max-p50, -max-p99, -max-p99.9 and -hgrm do not apply")
	}
	if err := checkSearch(*findMax, *searchSteps, cfg, out, shard); err != nil {
		return usagef("bench", "%v", err)
	}
	if *findMax && cfg.Rate == 0 {
		cfg.Rate = bench.DefaultSearchStart
	}
	shardName, err := shard.apply(&cfg, std.err)
	if err != nil {
		return usagef("bench", "%v", err)
	}
	if err := cfg.Validate(); err != nil {
		return usagef("bench", "%v", err)
	}
	if isTerminal(std.err) {
		cfg.Progress = std.err
	}
	tlsf.note(std.err, tgt, cfg.TLS)

	var res *bench.Result
	if *findMax {
		res, err = bench.FindMaxRate(ctx, cfg, out.th, *searchSteps)
	} else {
		res, err = bench.Run(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}

	if shardName != "" {
		res.Shard = shardName
		res.Host, _ = os.Hostname()
	}
	verdict := res.Verdict(out.th)
	if err := out.write(res, tgt.String(), std); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if interrupted(ctx) {
		return fmt.Errorf("%w: bench stopped after %.1fs of measuring", errInterrupted, res.Seconds)
	}
	if verdict != nil {
		return fmt.Errorf("bench: %w%s", verdict, refusedHint(ctx, tgt, res))
	}
	return nil
}

// checkSearch reports what is wrong with -find-max-rate and the flags
// that go with it.
func checkSearch(on bool, steps int, cfg bench.Config, out *reportFlags, shard *shardFlags) error {
	if !on {
		if steps != bench.DefaultSearchSteps {
			return errors.New("-find-max-steps applies with -find-max-rate only")
		}
		return nil
	}
	switch {
	case cfg.RampTo > 0 || len(cfg.Steps) > 0:
		return errors.New("-find-max-rate finds the rate itself: give -rate a single rate to start from, not a ramp or steps")
	case !out.th.Latency():
		return errors.New("-find-max-rate needs a latency to stay within: give -max-p99 (or -max-p50, -max-p99.9)")
	case out.th.MinRate > 0:
		return errors.New("-find-max-rate finds the rate itself: -min-rate does not apply")
	case cfg.Count > 0:
		return errors.New("-find-max-rate runs each step for -d; -n does not apply")
	case steps < 1 || steps > 100:
		return fmt.Errorf("-find-max-steps must be between 1 and 100, got %d", steps)
	case shard.shard != "":
		return errors.New("-find-max-rate judges each step on one machine's measurements: it cannot run as a -shard")
	case cfg.Mode != bench.PingPong:
		return fmt.Errorf("-find-max-rate applies to pingpong only, not %s", cfg.Mode)
	}
	return nil
}

// refusedHint says what a run whose every connection was refused means,
// as send and check do: nothing listens there, or only UDP echo does. A
// TCP run whose every connection the server closed without an echo may be
// a run against TLS echo.
func refusedHint(ctx context.Context, tgt target.Target, res *bench.Result) string {
	refused := res.ErrorsByKind["connect refused"] + res.ErrorsByKind["refused"]
	closed := res.ErrorsByKind["closed by server"] + res.ErrorsByKind["reset"]
	switch {
	case tgt.Transport == target.TCP && res.Ops == 0 && res.Errors > 0 && closed == res.Errors && target.SpeaksTLS(ctx, tgt.Addr()):
		return fmt.Sprintf(": the server closed every connection without an echo, and it speaks TLS: bench tls://%s", tgt.Addr())
	case res.Ops > 0 || res.Errors == 0 || refused != res.Errors:
		return ""
	case tgt.Transport == target.UDP:
		return fmt.Sprintf(": nothing is listening on %s (the port is closed)", tgt)
	case target.AnswersUDP(ctx, tgt.Addr()):
		return fmt.Sprintf(": nothing is listening on %s over TCP, but UDP echo answers there: bench udp://%s", tgt.Addr(), tgt.Addr())
	}
	return fmt.Sprintf(": nothing is listening on %s", tgt.Addr())
}

// isTerminal reports whether w is a terminal, where a line that rewrites
// itself makes sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
