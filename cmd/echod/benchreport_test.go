package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A threshold decides the exit status: 1 naming what was missed and by
// how much, 0 when kept.
func TestBenchThresholds(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	short := []string{"bench", "-d", "200ms", "-warmup", "0s", "-c", "2", addr}
	code, stdout, stderr := runCmd(t, nil, append(short, "-max-p99", "1ns")...)
	want := regexp.MustCompile(`^echod: bench: threshold missed: p99 \S+ is over -max-p99 1ns by \S+\n$`)
	if code != 1 || !want.MatchString(stderr) || !strings.Contains(stdout, "Thresholds missed:\n  p99 ") {
		t.Errorf("-max-p99 1ns: exit %d, stderr %q, stdout\n%s", code, stderr, stdout)
	}
	code, stdout, stderr = runCmd(t, nil, append(short, "-max-p99", "1m", "-max-p50", "1m", "-max-p99.9", "1m", "-min-rate", "1", "-max-errors", "0")...)
	if code != 0 || strings.Contains(stdout, "Thresholds") {
		t.Errorf("-max-p99 1m: exit %d, stderr %q, stdout\n%s", code, stderr, stdout)
	}
	code, _, stderr = runCmd(t, nil, append(short, "-min-rate", "1e12", "-max-p50", "1ns", "-json")...)
	if code != 1 || !strings.Contains(stderr, "2 thresholds missed: p50 ") || !strings.Contains(stderr, "is under -min-rate 1000000000000 by") {
		t.Errorf("two misses: exit %d, stderr %q", code, stderr)
	}
}

func TestBenchReportUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-max-p99", "-1ms", "a:1"}, "must not be negative"},
		{[]string{"bench", "-max-errors", "-2", "a:1"}, "-max-errors must not be negative"},
		{[]string{"bench", "-max-p99", "fast", "a:1"}, `invalid value "fast" for flag -max-p99`},
		{[]string{"bench", "-mode", "bulk", "-max-p99", "1ms", "a:1"}, "bulk measures no latency"},
		{[]string{"bench", "-shard", "2/2", "a:1"}, "-shard: invalid shard \"2/2\""},
		{[]string{"bench", "-shard", "0/4", "-c", "2", "a:1"}, "2 connections cannot be split 4 ways"},
		{[]string{"bench", "-start-at", "tomorrow", "a:1"}, "-start-at: invalid time"},
		{[]string{"bench", "-start-at", "2099-01-01T00:00:00Z", "a:1"}, "more than a day away"},
		{[]string{"bench", "-html", "x", "-hgrm", "x", "a:1"}, "name the same file"},
		{[]string{"bench", "merge"}, "no files given"},
		{[]string{"bench", "report", "a.json"}, "-html FILE is required"},
		{[]string{"bench", "report", "-html", "x.html"}, "no results given"},
	}
	for _, tt := range tests {
		code, _, stderr := runCmd(t, nil, tt.args...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte("no results here\n"), 0o644)
	for _, args := range [][]string{{"bench", "merge", empty}, {"bench", "report", "-html", filepath.Join(dir, "r.html"), empty}, {"bench", "merge", filepath.Join(dir, "missing.json")}} {
		code, _, stderr := runCmd(t, nil, args...)
		if code != 1 || !strings.Contains(stderr, "empty.json holds no bench result") && !strings.Contains(stderr, "no such file") {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// Two shards of one run, as two pods of the Indexed Job run them, started
// together and merged from their concatenated output as kubectl logs
// gives it: the merged messages are the sum of theirs, with one p99.
func TestBenchShardsMerge(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	start := time.Now().Add(500 * time.Millisecond).Format(time.RFC3339Nano)
	type shardOut struct {
		code           int
		stdout, stderr string
	}
	outs := make([]shardOut, 2)
	done := make(chan struct{})
	for i := range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			o := &outs[i]
			o.code, o.stdout, o.stderr = runCmd(t, nil, "bench", "-c", "4", "-d", "300ms", "-warmup", "0s", "-json",
				"-shard", fmt.Sprintf("%d/2", i), "-start-at", start, addr)
		}()
	}
	<-done
	<-done
	var logs strings.Builder
	var sum int64
	for i, o := range outs {
		if o.code != 0 {
			t.Fatalf("shard %d: exit %d: %s", i, o.code, o.stderr)
		}
		var r struct {
			Ops   int64
			Conns int
			Shard string
		}
		if err := json.Unmarshal([]byte(o.stdout), &r); err != nil || r.Conns != 2 || r.Shard != fmt.Sprintf("%d/2", i) {
			t.Fatalf("shard %d: %+v %v", i, r, err)
		}
		sum += r.Ops
		fmt.Fprintf(&logs, "some log line of pod %d\n%s", i, o.stdout)
	}

	code, stdout, stderr := runCmd(t, strings.NewReader(logs.String()), "bench", "merge", "-json", "-max-p99", "1m", "-")
	if code != 0 {
		t.Fatalf("merge: exit %d: %s", code, stderr)
	}
	var m struct {
		Ops     int64
		Conns   int
		Latency struct {
			Count int64
			P99   int64 `json:"p99_ns"`
		}
		Shards []struct{ Shard string }
	}
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatal(err)
	}
	if m.Ops != sum || m.Conns != 4 || m.Latency.P99 <= 0 || len(m.Shards) != 2 {
		t.Errorf("merged %+v; shards sum to %d messages", m, sum)
	}
	// The thresholds apply to the whole.
	code, stdout, stderr = runCmd(t, strings.NewReader(logs.String()), "bench", "merge", "-max-p99", "1ns", "-")
	if code != 1 || !strings.Contains(stderr, "bench merge: threshold missed: p99") || !strings.Contains(stdout, "Shards (2):") {
		t.Errorf("merge -max-p99 1ns: exit %d, stderr %q\n%s", code, stderr, stdout)
	}
	// One shard's output alone is not the run.
	code, _, stderr = runCmd(t, strings.NewReader(outs[1].stdout), "bench", "merge", "-")
	if code != 1 || !strings.Contains(stderr, "have 1 of 2 shards; missing [0/2]") {
		t.Errorf("one shard: exit %d, stderr %q", code, stderr)
	}
}

// -h after the address prints the usage too (the flags parse again after
// each argument), with the report flags and subcommands.
func TestBenchHelp(t *testing.T) {
	for _, args := range [][]string{{"bench", "-h"}, {"bench", "a:1", "-h"}, {"bench", "merge", "-h"}, {"bench", "merge", "x.json", "-h"}} {
		code, stdout, _ := runCmd(t, nil, args...)
		if code != 0 || !strings.Contains(stdout, "Usage: echod bench") || !strings.Contains(stdout, "-max-p99") {
			t.Errorf("%q: exit %d\n%s", args, code, stdout)
		}
	}
	_, stdout, _ := runCmd(t, nil, "bench", "-h")
	for _, want := range []string{"-shard", "-start-at", "-html", "-hgrm", "echod bench merge", "echod bench report"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench -h lacks %s", want)
		}
	}
}

// -html and -hgrm write their files beside the table; bench report puts
// several -json results in one HTML file.
func TestBenchWritesReports(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	code, stdout, stderr := runCmd(t, nil, "bench", "-d", "300ms", "-warmup", "0s", "-c", "2", "-json",
		"-html", file("run.html"), "-hgrm", file("run.hgrm"), addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	os.WriteFile(file("a.json"), []byte(stdout), 0o644)
	hgrm, _ := os.ReadFile(file("run.hgrm"))
	if !strings.HasPrefix(string(hgrm), "       Value     Percentile TotalCount 1/(1-Percentile)\n\n") || !strings.Contains(string(hgrm), "#[Mean    = ") {
		t.Errorf("-hgrm wrote\n%s", hgrm)
	}
	page, _ := os.ReadFile(file("run.html"))
	if !strings.Contains(string(page), `<path class="line"`) || !strings.Contains(string(page), "<h2>"+`<span class="swatch" style="background: #1f77b4"></span>`+addr) {
		t.Errorf("-html wrote no chart or no run name:\n%.500s", page)
	}

	code, _, stderr = runCmd(t, nil, "bench", "-mode", "cycle", "-d", "300ms", "-warmup", "0s", "-json", addr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	_, stdout, _ = runCmd(t, nil, "bench", "-mode", "cycle", "-d", "300ms", "-warmup", "0s", "-json", addr)
	os.WriteFile(file("b.json"), []byte(stdout), 0o644)
	code, stdout, stderr = runCmd(t, nil, "bench", "report", "-html", file("both.html"), file("a.json"), file("b.json"))
	if code != 0 || stdout != "wrote "+file("both.html")+": 2 runs\n" {
		t.Fatalf("report: exit %d, %q %q", code, stdout, stderr)
	}
	page, _ = os.ReadFile(file("both.html"))
	for _, want := range []string{"a.json", "b.json", "cycle, 1 at once"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// A file that cannot be written is a runtime failure, after the table.
	code, stdout, stderr = runCmd(t, nil, "bench", "-d", "100ms", "-warmup", "0s", "-html", file("no/such/dir.html"), addr)
	if code != 1 || !strings.Contains(stderr, "-html: ") || !strings.Contains(stdout, "Summary:") {
		t.Errorf("unwritable -html: exit %d, stderr %q", code, stderr)
	}
}
