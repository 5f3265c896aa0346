// Command echod is an echo server (RFC 862) and the tools to prove that an
// echo server works: a client, a conformance checker and a load generator.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `echod is an echo server (RFC 862) and the tools to prove that one works.

Usage:
  echod serve [flags]                      serve TCP echo (UDP, TLS, web with flags)
  echod send [flags] ADDRESS [MESSAGE...]  send MESSAGE or standard input, print the echo
  echod check [flags] ADDRESS              check that any echo server works, with reasons
  echod bench [flags] ADDRESS              load-test an echo server, verifying every byte
  echod bench merge|report [flags] FILE... merge shards' results, or report runs in HTML
  echod path [flags] ADDRESS               what the network path to an echo server does
  echod version                            print the version of this build
  echod help [COMMAND]                     show this help, or a command's

ADDRESS is HOST:PORT, HOST PORT, or a URL naming the transport: tcp:// (the
default), udp://, tls://, ws:// or wss://, as in udp://127.0.0.1:7007.
Flags may come before or after the address.

Run 'echod help COMMAND' for the flags of a command.
`

// stdio is what a command reads from and writes to, so tests can pass buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	// inTTY and outTTY say that in and out are a terminal: a person
	// typing, and reading.
	inTTY, outTTY bool
}

func main() {
	// The first SIGINT or SIGTERM cancels ctx, which stops the command
	// gracefully; a second one ends the process at once, drain or not.
	ctx, cancel := context.WithCancelCause(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		cancel(errInterrupted)
		sig := <-signals
		fmt.Fprintf(os.Stderr, "echod: second signal (%v); exiting without waiting\n", sig)
		os.Exit(1)
	}()

	err := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr,
		inTTY: isTerminal(os.Stdin), outTTY: isTerminal(os.Stdout)})
	printError(os.Stderr, err)
	os.Exit(exitCode(err))
}

// printError shows the error run returned, in one line, unless there is
// none to show: -h, or a failure the command's report has already told.
func printError(w io.Writer, err error) {
	if err != nil && !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errReported) {
		fmt.Fprintf(w, "echod: %v\n", err)
	}
}

// errInterrupted is why a command's context ends when the user presses
// Ctrl-C: the command stops, says so in one line, and exits with 130.
var errInterrupted = errors.New("interrupted")

// errReported marks an error the command has already shown the user, in
// its report: main adds no line of its own, only the exit status.
var errReported = errors.New("reported")

// reported returns an error that exits 1 without a message of its own.
func reported() error { return errReported }

// interrupted reports whether ctx ended because the user interrupted the
// command (or a test cancelled it), rather than by a deadline.
func interrupted(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// run dispatches args to a subcommand.
func run(ctx context.Context, args []string, std stdio) error {
	if len(args) == 0 {
		fmt.Fprint(std.err, usage)
		return &usageError{err: errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "help", "-h", "-help", "--help":
		if cmd == "help" && len(rest) > 0 {
			switch rest[0] {
			case "serve", "send", "check", "bench", "path":
				return run(ctx, []string{rest[0], "-h"}, std)
			case "version", "help":
			default:
				return &usageError{err: fmt.Errorf("no help for %q: the commands are serve, send, check, bench, path and version", rest[0])}
			}
		}
		fmt.Fprint(std.out, usage)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(std.out, version())
		return nil
	case "serve":
		return runServe(ctx, rest, std)
	case "send":
		return runSend(ctx, rest, std)
	case "check":
		return runCheck(ctx, rest, std)
	case "bench":
		return runBench(ctx, rest, std)
	case "path":
		return runPath(ctx, rest, std)
	default:
		return &usageError{err: fmt.Errorf("unknown command %q (run 'echod help' for the list)", cmd)}
	}
}

// usageError is a mistake on the command line rather than a failure at run
// time: it exits with status 2.
type usageError struct {
	cmd string // the subcommand whose usage helps, if any
	err error
}

func (e *usageError) Error() string {
	if e.cmd == "" {
		return e.err.Error()
	}
	return fmt.Sprintf("%s: %v (run 'echod %s -h' for usage)", e.cmd, e.err, e.cmd)
}

func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, err: fmt.Errorf(format, args...)}
}

// exitCode maps the result of run to the process's exit status: 0 success,
// 1 runtime failure, 2 usage error, 130 interrupted (as a shell reports a
// process ended by SIGINT).
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errInterrupted):
		return 130
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// newFlagSet returns a flag set for a subcommand whose -h prints synopsis and
// the flags to out.
func newFlagSet(name, synopsis string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s\n\nFlags:\n", synopsis)
		fs.SetOutput(out)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs. Parse errors come back as one-line usage
// errors; -h prints the usage and returns flag.ErrHelp.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// The flag package prints usage on every error; here an error is
	// reported once, in one line, by main, and usage only for -h.
	fs.SetOutput(io.Discard)
	printUsage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = printUsage }() // parseArgs parses again after each argument
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage()
		return err
	}
	if err != nil {
		return &usageError{cmd: fs.Name(), err: err}
	}
	return nil
}

// parseArgs parses flags from args wherever they stand, before and after
// the other arguments (echod check 127.0.0.1:7007 -v), and returns the
// other arguments in order. "--" ends the flags.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// version describes this build from the information the Go toolchain
// stamps into it: the module version when built with go install
// MODULE@VERSION, else the version control revision, if any.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "echod (version unknown: built without module information)"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	v := bi.Main.Version
	var parts []string
	if v == "" || v == "(devel)" {
		parts = append(parts, "echod (devel): a development build")
	} else {
		parts = append(parts, "echod "+v)
	}
	if rev := settings["vcs.revision"]; rev != "" {
		r := "revision " + rev[:min(len(rev), 12)]
		if t := settings["vcs.time"]; t != "" {
			r += " of " + t
		}
		if settings["vcs.modified"] == "true" {
			r += ", with local changes"
		}
		parts = append(parts, r)
	}
	parts = append(parts, bi.GoVersion)
	return strings.Join(parts, ", ")
}
