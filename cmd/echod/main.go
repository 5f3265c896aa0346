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
	"syscall"
)

const usage = `echod is an echo server (RFC 862) and the tools to prove that one works.

Usage:
  echod serve [flags]              serve TCP echo (UDP, TLS with flags)
  echod send [flags] [MESSAGE...]  send MESSAGE or standard input, print the echo
  echod check [flags] HOST:PORT    check that any echo server works, with reasons
  echod bench [flags] HOST:PORT    load-test an echo server, verifying every byte
  echod help                       show this help

Run 'echod COMMAND -h' for the flags of a command.
`

// stdio is what a command reads from and writes to, so tests can pass buffers.
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

func main() {
	// The first SIGINT or SIGTERM cancels ctx, which stops the command
	// gracefully; a second one ends the process at once, drain or not.
	ctx, cancel := context.WithCancel(context.Background())
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-signals
		cancel()
		sig := <-signals
		fmt.Fprintf(os.Stderr, "echod: second signal (%v); exiting without waiting\n", sig)
		os.Exit(1)
	}()

	err := run(ctx, os.Args[1:], stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "echod: %v\n", err)
	}
	os.Exit(exitCode(err))
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
		fmt.Fprint(std.out, usage)
		return nil
	case "serve":
		return runServe(ctx, rest, std)
	case "send":
		return runSend(ctx, rest, std)
	case "check":
		return runCheck(ctx, rest, std)
	case "bench":
		return runBench(ctx, rest, std)
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
// 1 runtime failure, 2 usage error.
func exitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
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
