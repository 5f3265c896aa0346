package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/echod/echod/check"
)

func runCheck(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("check", "echod check [flags] HOST:PORT", std.out)
	udp := fs.Bool("udp", false, "also check UDP echo on the same address")
	udpAddr := fs.String("udp-addr", "", "check UDP echo on `HOST:PORT` (implies -udp)")
	protohackers := fs.Bool("protohackers", false, "run the Protohackers Smoke Test sequence instead of the full TCP suite")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up on the whole run after this long (0: never)")
	patience := fs.Duration("patience", check.DefaultPatience, "how long to wait for an echo or close that should come at once; raise it for a distant server")
	runExpr := fs.String("run", "", "run only the checks whose names match `REGEX`")
	verbose := fs.Bool("v", false, "show each check as it starts, its time, and skipped checks")
	asJSON := fs.Bool("json", false, "print the results as one JSON object")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// Flags may also follow the address: echod check 127.0.0.1:7007 -v.
	if fs.NArg() > 1 {
		addr := fs.Arg(0)
		if err := parseFlags(fs, fs.Args()[1:]); err != nil {
			return err
		}
		if fs.NArg() > 0 {
			return usagef("check", "unexpected argument %q", fs.Arg(0))
		}
		args = []string{addr}
	} else {
		args = fs.Args()
	}
	if len(args) == 0 {
		return usagef("check", "no address given: want HOST:PORT of the echo server, such as 127.0.0.1:7007")
	}
	cfg := check.Config{Addr: args[0], Protohackers: *protohackers, Patience: *patience}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return usagef("check", "invalid address %q: want HOST:PORT: %v", cfg.Addr, err)
	}
	if *udpAddr != "" {
		if _, _, err := net.SplitHostPort(*udpAddr); err != nil {
			return usagef("check", "invalid -udp-addr %q: want HOST:PORT: %v", *udpAddr, err)
		}
		cfg.UDPAddr = *udpAddr
	} else if *udp {
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
		for _, c := range check.Checks(check.Config{Addr: cfg.Addr, UDPAddr: cfg.UDPAddr, Protohackers: cfg.Protohackers}) {
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
	cfg.Started = func(c check.Check) {
		if *verbose {
			fmt.Fprintf(progress, "RUN  %s: %s (deadline %v)\n", c.Name, c.Doc, c.Deadline)
		}
	}
	cfg.Finished = func(r check.Result) {
		if r.Status == check.Skip && !*verbose {
			return
		}
		fmt.Fprintln(progress, resultLine(r, *verbose))
	}

	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	rep, err := check.Run(ctx, cfg)
	var unreachable *check.UnreachableError
	if errors.As(err, &unreachable) {
		// Not a failing server but a wrong address, or no server at all.
		return &usageError{err: err}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		if err := writeJSON(std.out, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(std.out, summaryLine(rep))
	}
	if f := rep.Failed(); f > 0 {
		return fmt.Errorf("%d of %d checks failed against %s", f, f+rep.Passed(), target(rep))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return nil
}

// resultLine is one check's verdict: PASS name (detail), FAIL name: reason.
func resultLine(r check.Result, verbose bool) string {
	var line string
	switch r.Status {
	case check.Pass:
		line = fmt.Sprintf("PASS %s (%s)", r.Name, r.Detail)
	case check.Fail:
		line = fmt.Sprintf("FAIL %s: %s", r.Name, r.Reason)
	default:
		line = fmt.Sprintf("SKIP %s: %s", r.Name, r.Reason)
	}
	if verbose && r.Status != check.Skip {
		line += fmt.Sprintf(" [%v]", r.Duration.Round(time.Millisecond))
	}
	return line
}

func target(rep check.Report) string {
	switch {
	case rep.Addr == "":
		return "UDP " + rep.UDPAddr
	case rep.UDPAddr == "" || rep.UDPAddr == rep.Addr:
		return rep.Addr
	}
	return rep.Addr + " and UDP " + rep.UDPAddr
}

func summaryLine(rep check.Report) string {
	skipped := len(rep.Results) - rep.Passed() - rep.Failed()
	note := ""
	if skipped > 0 {
		note = fmt.Sprintf(", %d skipped", skipped)
	}
	took := rep.Duration.Round(10 * time.Millisecond)
	if f := rep.Failed(); f > 0 {
		return fmt.Sprintf("FAIL: %d of %d checks failed against %s%s (%v)", f, f+rep.Passed(), target(rep), note, took)
	}
	return fmt.Sprintf("PASS: %d checks passed against %s%s (%v)", rep.Passed(), target(rep), note, took)
}

// jsonReport is the -json output: one object, stable field names.
type jsonReport struct {
	Addr    string       `json:"addr,omitempty"`
	UDPAddr string       `json:"udp_addr,omitempty"`
	OK      bool         `json:"ok"`
	Passed  int          `json:"passed"`
	Failed  int          `json:"failed"`
	Skipped int          `json:"skipped"`
	Seconds float64      `json:"seconds"`
	Checks  []jsonResult `json:"checks"`
}

type jsonResult struct {
	Name    string  `json:"name"`
	Status  string  `json:"status"` // pass, fail or skip
	Detail  string  `json:"detail,omitempty"`
	Reason  string  `json:"reason,omitempty"`
	Seconds float64 `json:"seconds"`
}

func writeJSON(w io.Writer, rep check.Report) error {
	out := jsonReport{
		Addr: rep.Addr, UDPAddr: rep.UDPAddr,
		OK: rep.OK(), Passed: rep.Passed(), Failed: rep.Failed(),
		Skipped: len(rep.Results) - rep.Passed() - rep.Failed(),
		Seconds: rep.Duration.Seconds(),
		Checks:  []jsonResult{},
	}
	for _, r := range rep.Results {
		out.Checks = append(out.Checks, jsonResult{
			Name: r.Name, Status: string(r.Status), Detail: r.Detail, Reason: r.Reason,
			Seconds: r.Duration.Seconds(),
		})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
