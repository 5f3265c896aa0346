package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/echod/echod/bench"
)

// reportFlags are the flags that say what to do with a result, shared by
// bench, bench merge and bench report: where to write it and the
// thresholds it must keep.
type reportFlags struct {
	asJSON     bool
	html, hgrm string
	th         bench.Thresholds
}

func addReportFlags(fs *flag.FlagSet) *reportFlags {
	f := &reportFlags{}
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON (with its latency histogram, for bench merge and bench report)")
	fs.StringVar(&f.html, "html", "", "write a self-contained HTML report with charts to `FILE`")
	fs.StringVar(&f.hgrm, "hgrm", "", "write the latency percentile spectrum in milliseconds to `FILE`, in HdrHistogram's .hgrm format")
	fs.DurationVar(&f.th.MaxP50, "max-p50", 0, "threshold: fail (exit 1) if the p50 latency is above this `duration`")
	fs.DurationVar(&f.th.MaxP99, "max-p99", 0, "threshold: fail (exit 1) if the p99 latency is above this `duration`")
	fs.DurationVar(&f.th.MaxP999, "max-p99.9", 0, "threshold: fail (exit 1) if the p99.9 latency is above this `duration`")
	fs.Float64Var(&f.th.MinRate, "min-rate", 0, "threshold: fail (exit 1) if fewer than this many messages, sessions or (bulk) bytes per second were verified")
	fs.Int64Var(&f.th.MaxErrors, "max-errors", -1, "threshold: tolerate up to `N` connection errors (default: any fails the run)")
	return f
}

// check reports what is wrong with the flags, as a usage error's text.
func (f *reportFlags) check() error {
	switch {
	case f.th.MaxP50 < 0 || f.th.MaxP99 < 0 || f.th.MaxP999 < 0:
		return errors.New("-max-p50, -max-p99 and -max-p99.9 must not be negative")
	case f.th.MinRate < 0:
		return errors.New("-min-rate must not be negative")
	case f.th.MaxErrors < -1:
		return errors.New("-max-errors must not be negative")
	case f.html != "" && f.html == f.hgrm:
		return errors.New("-html and -hgrm name the same file")
	}
	return nil
}

// write prints res as the flags say, and writes its files.
func (f *reportFlags) write(res *bench.Result, label string, std stdio) error {
	if f.asJSON {
		enc := json.NewEncoder(std.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else if err := res.WriteText(std.out); err != nil {
		return err
	}
	if f.hgrm != "" {
		if err := writeFile(f.hgrm, res.WriteHgrm); err != nil {
			return fmt.Errorf("-hgrm: %w", err)
		}
	}
	if f.html != "" {
		runs := []bench.Labeled{{Label: label, Result: res}}
		if err := writeFile(f.html, func(w io.Writer) error { return bench.WriteHTML(w, runs) }); err != nil {
			return fmt.Errorf("-html: %w", err)
		}
	}
	return nil
}

// writeFile writes name with write, all or nothing: a report half written
// is removed.
func writeFile(name string, write func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// runBenchMerge merges the JSON results of a run's shards.
func runBenchMerge(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("bench merge", "echod bench merge [flags] FILE... (- for standard input)", std.out)
	out := addReportFlags(fs)
	files, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := out.check(); err != nil {
		return usagef("bench merge", "%v", err)
	}
	if len(files) == 0 {
		return usagef("bench merge", "no files given: name the shards' -json outputs, or - for standard input")
	}
	var all []*bench.Result
	for _, name := range files {
		results, err := readResults(name, std.in)
		if err != nil {
			return fmt.Errorf("bench merge: %w", err)
		}
		all = append(all, results...)
	}
	res, err := bench.Merge(all)
	if err != nil {
		return fmt.Errorf("bench merge: %w", err)
	}
	verdict := res.Verdict(out.th)
	if err := out.write(res, fmt.Sprintf("%d shards", len(all)), std); err != nil {
		return fmt.Errorf("bench merge: %w", err)
	}
	if verdict != nil {
		return fmt.Errorf("bench merge: %w", verdict)
	}
	return ctx.Err()
}

// runBenchReport writes one HTML report of several runs' JSON results.
func runBenchReport(_ context.Context, args []string, std stdio) error {
	fs := newFlagSet("bench report", "echod bench report -html FILE RESULT.json...", std.out)
	html := fs.String("html", "", "write the report to `FILE` (required)")
	files, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	switch {
	case *html == "":
		return usagef("bench report", "-html FILE is required")
	case len(files) == 0:
		return usagef("bench report", "no results given: name files written by bench -json")
	}
	var runs []bench.Labeled
	for _, name := range files {
		results, err := readResults(name, std.in)
		if err != nil {
			return fmt.Errorf("bench report: %w", err)
		}
		for i, r := range results {
			label := filepath.Base(name)
			if len(results) > 1 {
				label = fmt.Sprintf("%s #%d", label, i+1)
			}
			runs = append(runs, bench.Labeled{Label: label, Result: r})
		}
	}
	if err := writeFile(*html, func(w io.Writer) error { return bench.WriteHTML(w, runs) }); err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	fmt.Fprintf(std.out, "wrote %s: %d %s\n", *html, len(runs), map[bool]string{true: "run", false: "runs"}[len(runs) == 1])
	return nil
}

// readResults reads the results in the file name, or in stdin for "-".
func readResults(name string, stdin io.Reader) ([]*bench.Result, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	} else {
		name = "standard input"
	}
	results, err := bench.ReadResults(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(results) == 0 {
		return nil, fmt.Errorf("%s holds no bench result (write them with bench -json)", name)
	}
	return results, nil
}

// shardFlags split a run over machines.
type shardFlags struct {
	shard, startAt string
}

func addShardFlags(fs *flag.FlagSet) *shardFlags {
	f := &shardFlags{}
	fs.StringVar(&f.shard, "shard", "", "run shard `I/N` (I from 0) of a run over N machines: 1/N of -c, -rate and -n; merge their -json with bench merge")
	fs.StringVar(&f.startAt, "start-at", "", "start at `TIME` (RFC 3339, or Unix seconds), so that shards start together")
	return f
}

// apply applies the flags to cfg, and returns the shard's name ("" for none).
// A start time already past (but not 0, which means "at once") is worth a
// warning on stderr: the shards are then not starting together.
func (f *shardFlags) apply(cfg *bench.Config, stderr io.Writer) (string, error) {
	if f.startAt != "" {
		t, err := bench.ParseTime(f.startAt)
		if err != nil {
			return "", fmt.Errorf("-start-at: %v", err)
		}
		if time.Until(t) > 24*time.Hour {
			return "", fmt.Errorf("-start-at %s is more than a day away", t.Format(time.RFC3339))
		}
		if late := -time.Until(t); late > time.Second && t.Unix() != 0 {
			fmt.Fprintf(stderr, "echod: bench: -start-at %s passed %v ago; starting now\n", t.Format(time.RFC3339), late.Round(time.Second))
		}
		cfg.StartAt = t
	}
	if f.shard == "" {
		return "", nil
	}
	i, n, err := bench.ParseShard(f.shard)
	if err != nil {
		return "", fmt.Errorf("-shard: %v", err)
	}
	c, err := cfg.Shard(i, n)
	if err != nil {
		return "", fmt.Errorf("-shard: %v", err)
	}
	*cfg = c
	return fmt.Sprintf("%d/%d", i, n), nil
}
