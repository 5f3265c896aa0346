package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/echod/echod/check"
	"github.com/echod/echod/internal/netsim"
	"github.com/echod/echod/internal/target"
)

func runCheck(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("check", "echod check [flags] ADDRESS [flags]", std.out)
	udp := fs.Bool("udp", false, "also check UDP echo on the same address")
	udpAddr := fs.String("udp-addr", "", "check UDP echo on `HOST:PORT` (implies -udp)")
	protohackers := fs.Bool("protohackers", false, "run what the Protohackers Smoke Test needs, and only that, instead of the full TCP suite")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up on the whole run after this long (0: never)")
	patience := fs.Duration("patience", check.DefaultPatience, "how long to wait for an echo or close that should come at once; raise it for a distant server")
	runExpr := fs.String("run", "", "run only the checks whose names match `REGEX`")
	verbose := fs.Bool("v", false, "show each check as it starts, its time, and skipped checks")
	asJSON := fs.Bool("json", false, "print the results as one JSON object")
	tlsf := addTLSFlags(fs)
	simulated := fs.String("simulate", "", "check through an in-process proxy in front of ADDRESS that behaves like `PATH`, as echod path -simulate does (see docs/path.md)")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(std.out, "\nADDRESS is HOST:PORT, HOST PORT, tcp://HOST:PORT, udp://HOST:PORT (the UDP checks only),\ntls://HOST:PORT (the TCP checks over TLS), or ws://HOST:PORT/PATH or wss://HOST:PORT/PATH\n(the WebSocket checks).\n")
		writeCheckList(std.out)
	}
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	tgt, used, err := target.FromArgs(positional)
	if err != nil {
		return &usageError{cmd: "check", err: err}
	}
	if used < len(positional) {
		return usagef("check", "unexpected argument %q", positional[used])
	}

	var sim netsim.Path
	if *simulated != "" {
		if *udp || *udpAddr != "" {
			return usagef("check", "-simulate puts one path in front of ADDRESS: check UDP with udp://HOST:PORT on its own")
		}
		if sim, err = netsim.ParsePath(*simulated); err != nil {
			return usagef("check", "invalid -simulate: %v", err)
		}
	}

	cfg := check.Config{Protohackers: *protohackers, Patience: *patience}
	switch tgt.Transport {
	case target.TCP, target.TLS:
		cfg.Addr = tgt.Addr()
	case target.UDP:
		if *protohackers {
			return usagef("check", "-protohackers checks TCP, not %s", tgt)
		}
		cfg.UDPAddr = tgt.Addr()
	case target.WS, target.WSS:
		if *protohackers || *udp || *udpAddr != "" {
			return usagef("check", "-protohackers, -udp and -udp-addr check TCP and UDP echo, not %s", tgt)
		}
		cfg.URL = tgt.URL()
	}
	if cfg.TLS, err = tlsf.config("check", tgt); err != nil {
		return err
	}
	if *simulated != "" {
		server := tgt.String()
		stop, err := simulate(ctx, &tgt, cfg.TLS, sim)
		var nobody *nothingBehindError
		switch {
		case errors.As(err, &nobody) && errors.Is(err, syscall.ECONNREFUSED):
			return &usageError{err: fmt.Errorf("nothing is listening on %s", tgt.Addr())}
		case errors.As(err, &nobody):
			return &usageError{err: fmt.Errorf("cannot connect to %s: %w", tgt.Addr(), nobody)}
		case err != nil:
			return err
		}
		defer stop()
		fmt.Fprintf(std.err, "simulating %s: an in-process proxy at %s in front of %s\n", sim, tgt.Addr(), server)
		switch tgt.Transport {
		case target.UDP:
			cfg.UDPAddr = tgt.Addr()
		case target.WS, target.WSS:
			cfg.URL = tgt.URL()
		default:
			cfg.Addr = tgt.Addr()
		}
	}
	if *udpAddr != "" {
		u, err := target.Parse(*udpAddr)
		if err != nil || u.Transport != target.TCP {
			return usagef("check", "invalid -udp-addr %q: want HOST:PORT", *udpAddr)
		}
		cfg.UDPAddr = u.Addr()
	} else if *udp && cfg.Addr != "" {
		cfg.UDPAddr = cfg.Addr
	}
	if *timeout < 0 {
		return usagef("check", "-timeout must not be negative, got %v", *timeout)
	}
	if *patience <= 0 {
		return usagef("check", "-patience must be positive, got %v", *patience)
	}
	if *runExpr != "" {
		re, err := regexp.Compile(*runExpr)
		if err != nil {
			return usagef("check", "invalid -run %q: %v", *runExpr, err)
		}
		cfg.Run = re
	}
	if len(check.Checks(cfg)) == 0 {
		var names []string
		for _, c := range check.Checks(check.Config{Addr: cfg.Addr, UDPAddr: cfg.UDPAddr, URL: cfg.URL, Protohackers: cfg.Protohackers}) {
			names = append(names, c.Name)
		}
		return usagef("check", "-run %q matches no check (there are: %s)", *runExpr, strings.Join(names, ", "))
	}

	// Progress goes to standard output as text, or to standard error next
	// to JSON, so the JSON stays one clean object.
	progress := std.out
	if *asJSON {
		progress = io.Discard
		if *verbose {
			progress = std.err
		}
	}
	tlsf.note(std.err, tgt, cfg.TLS)
	cfg.Started = func(c check.Check) {
		if *verbose {
			fmt.Fprintf(progress, "RUN  %s: %s (deadline %v)\n", c.Name, c.Doc, c.Deadline)
		}
	}
	cfg.Finished = func(r check.Result) { r.WriteText(progress, *verbose) }
	if *protohackers && !*asJSON && !*verbose {
		// The shape of the real checker's log, so the two read alike.
		fmt.Fprintln(progress, "A local reconstruction of the Protohackers Smoke Test (problem 0), in the shape of its checker's log:")
		n := 0
		byName := map[string]check.Check{}
		for _, c := range check.Checks(cfg) {
			byName[c.Name] = c
		}
		cfg.Finished = func(r check.Result) {
			r.WriteProtohackersLog(progress, n, byName[r.Name])
			n++
		}
	}

	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	rep, err := check.Run(ctx, cfg)
	var unreachable *check.UnreachableError
	switch {
	case errors.As(err, &unreachable):
		// Not a failing server but a wrong address, or no server at all.
		return &usageError{err: err}
	case err != nil && interrupted(ctx):
		return fmt.Errorf("%w after %d of %s: %d passed, %d failed", errInterrupted,
			len(rep.Results), plural(len(check.Checks(cfg)), "check"), rep.Passed(), rep.Failed())
	case err != nil:
		return err
	}
	if *asJSON {
		if err := rep.WriteJSON(std.out); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(std.out, rep.Summary())
	}
	if !rep.OK() {
		// The summary above said why.
		return reported()
	}
	return nil
}

// writeCheckList lists every check with what it proves, for check -h.
func writeCheckList(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, group := range []struct {
		title  string
		checks []check.Check
	}{
		{"Checks (TCP, and over TLS for tls://):", check.TCPChecks()},
		{"Checks with -protohackers (instead of the TCP checks):", check.ProtohackersChecks()},
		{"Checks with -udp or udp://:", check.UDPChecks()},
		{"Checks for ws:// and wss:// (WebSocket echo):", check.WebSocketChecks()},
	} {
		fmt.Fprintf(tw, "\n%s\n", group.title)
		for _, c := range group.checks {
			fmt.Fprintf(tw, "  %s\t%s\n", c.Name, c.Doc)
		}
	}
	tw.Flush()
}

// plural formats n of a noun, in the plural unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
