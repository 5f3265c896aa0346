package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A run's JSON carries its whole latency histogram, which decodes to the
// percentiles the result reports, and a time series of its seconds whose
// messages add up to the run's.
func TestResultCarriesHistogramAndSeries(t *testing.T) {
	addr := serveTCP(t, echo)
	cfg := smoke(addr, PingPong)
	cfg.Duration = 2200 * time.Millisecond
	res := run(t, cfg)
	if res.Histogram == "" {
		t.Fatal("no histogram")
	}
	h, err := decodeHistogram(res.Histogram)
	if err != nil {
		t.Fatal(err)
	}
	if got := summarize(h); *got != *res.Latency {
		t.Errorf("decoded histogram gives %+v, result says %+v", got, res.Latency)
	}
	if len(res.Series) < 2 || len(res.Series) > 4 {
		t.Fatalf("%d seconds in a 2.2s run: %+v", len(res.Series), res.Series)
	}
	var ops, samples int64
	for _, s := range res.Series {
		ops += s.Ops
		if s.Latency != nil {
			samples += s.Latency.Count
		}
		if s.Seconds <= 0 || s.Seconds > 1.5 || s.RSS == 0 {
			t.Errorf("second %+v: want a length up to about 1s and the server's memory (-pid)", s)
		}
	}
	// A worker that saw the window open may record its message just after
	// the last second was cut: it counts in the run's histogram only.
	if ops != res.Ops || samples > res.Latency.Count || samples < res.Latency.Count-int64(cfg.Conns) {
		t.Errorf("seconds add up to %d messages and %d samples, the run to %d and %d", ops, samples, res.Ops, res.Latency.Count)
	}
	if res.Start.IsZero() {
		t.Error("no start time")
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"histogram":"HISTF`, `"series":[{"at":`, `"start":"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestThresholds(t *testing.T) {
	res := &Result{Unit: "message", Ops: 1000, OpsPerSec: 40000, Errors: 3,
		Latency: &Latency{Count: 1000, P50: 100 * time.Microsecond, P99: 2 * time.Millisecond, P999: 9 * time.Millisecond}}
	tests := []struct {
		name string
		th   Thresholds
		want []string
	}{
		{"none", Thresholds{MaxErrors: -1}, nil},
		{"all kept", Thresholds{MaxP50: time.Millisecond, MaxP99: time.Minute, MaxP999: 10 * time.Millisecond, MinRate: 40000, MaxErrors: 3}, nil},
		{"p99", Thresholds{MaxP99: 1, MaxErrors: -1}, []string{"p99 2.00ms is over -max-p99 1ns by 2.00ms"}},
		{"p50 and rate", Thresholds{MaxP50: 50 * time.Microsecond, MinRate: 50000, MaxErrors: -1}, []string{
			"p50 100.0µs is over -max-p50 50µs by 50.0µs",
			"rate 40000 messages/s is under -min-rate 50000 by 10000 (20.0%)"}},
		{"p99.9", Thresholds{MaxP999: 5 * time.Millisecond, MaxErrors: -1}, []string{"p99.9 9.00ms is over -max-p99.9 5ms by 4.00ms"}},
		{"errors", Thresholds{MaxErrors: 0}, []string{"3 connection errors, over -max-errors 0 by 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := *res
			missed := tt.th.Apply(&r)
			if missed != (len(tt.want) > 0) || fmt.Sprint(r.Missed) != fmt.Sprint(tt.want) {
				t.Errorf("missed %v %q, want %q", missed, r.Missed, tt.want)
			}
		})
	}
	// A latency threshold on a run without latencies cannot be met.
	r := &Result{Ops: 5, OpsPerSec: 5}
	if !(Thresholds{MaxP99: time.Second, MaxErrors: -1}).Apply(r) || !strings.Contains(r.Missed[0], "no latency was measured") {
		t.Errorf("missed %q", r.Missed)
	}
}

// Connection errors fail a run unless -max-errors allows them; a
// mismatch fails it whatever the thresholds.
func TestVerdict(t *testing.T) {
	base := Result{Unit: "message", Ops: 10, Errors: 2, FirstError: "connect: refused", Latency: &Latency{P99: time.Millisecond}}
	r := base
	if err := r.Verdict(Thresholds{MaxErrors: -1}); err == nil || !strings.Contains(err.Error(), "2 connection errors") {
		t.Errorf("errors without a threshold: %v", err)
	}
	r = base
	if err := r.Verdict(Thresholds{MaxErrors: 2}); err != nil {
		t.Errorf("2 errors within -max-errors 2: %v", err)
	}
	r = base
	err := r.Verdict(Thresholds{MaxErrors: 5, MaxP99: time.Microsecond, MinRate: 100})
	if err == nil || !strings.HasPrefix(err.Error(), "2 thresholds missed: p99 1.00ms is over -max-p99 1µs") {
		t.Errorf("two misses: %v", err)
	}
	r = base
	r.Mismatches, r.FirstMismatch = 1, &Mismatch{Text: "byte 3 differs"}
	if err := r.Verdict(Thresholds{MaxErrors: 100}); err == nil || !strings.Contains(err.Error(), "byte 3 differs") {
		t.Errorf("a mismatch: %v", err)
	}
}

func TestShard(t *testing.T) {
	cfg := Config{Addr: "a:1", Conns: 10, Rate: 3000, Count: 101}
	var conns int
	var count int64
	var rate float64
	for i := range 3 {
		c, err := cfg.Shard(i, 3)
		if err != nil {
			t.Fatal(err)
		}
		conns, count, rate = conns+c.Conns, count+c.Count, rate+c.Rate
		if c.Rate != 1000 || c.Conns < 3 || c.Conns > 4 {
			t.Errorf("shard %d/3: %d conns, rate %v", i, c.Conns, c.Rate)
		}
	}
	if conns != 10 || count != 101 || rate != 3000 {
		t.Errorf("shards add up to %d conns, count %d, rate %v", conns, count, rate)
	}
	if _, err := (Config{Addr: "a:1", Conns: 2}).Shard(0, 3); err == nil || !strings.Contains(err.Error(), "2 connections cannot be split 3 ways") {
		t.Errorf("too few connections: %v", err)
	}
	if _, err := (Config{Addr: "a:1", Conns: 4, Count: 2}).Shard(3, 4); err == nil || !strings.Contains(err.Error(), "a count of 2 cannot be split 4 ways") {
		t.Errorf("too small a count: %v", err)
	}
}

func TestParseShardAndTime(t *testing.T) {
	for _, s := range []string{"", "1", "3/3", "-1/2", "a/b", "1/0", "0/2/3"} {
		if _, _, err := ParseShard(s); err == nil {
			t.Errorf("ParseShard(%q) succeeded", s)
		}
	}
	if i, n, err := ParseShard("2/5"); i != 2 || n != 5 || err != nil {
		t.Errorf("ParseShard(2/5) = %d, %d, %v", i, n, err)
	}
	want := time.Date(2026, 12, 5, 9, 0, 0, 500_000_000, time.UTC)
	for _, s := range []string{"2026-12-05T09:00:00.5Z", "2026-12-05T10:00:00.5+01:00", fmt.Sprint(want.Unix()) + ".5"} {
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "soon", "2026-12-05 09:00", "-5", "1e30", "NaN"} {
		if _, err := ParseTime(s); err == nil {
			t.Errorf("ParseTime(%q) succeeded", s)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2026-12-05T09:00:00Z", "1796461200.25", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseTime(s)
		ParseShard(s)
	})
}

// Two shards started together merge into one result: their counts add up
// and the p99 is the p99 of all their latencies, not of their p99s.
func TestShardsMerge(t *testing.T) {
	addr := serveTCP(t, echo)
	start := time.Now().Add(300 * time.Millisecond)
	results := make([]*Result, 2)
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			cfg := smoke(addr, PingPong)
			cfg.PID = 0
			cfg.StartAt = start
			cfg, err := cfg.Shard(i, 2)
			if err == nil {
				results[i], err = Run(context.Background(), cfg)
			}
			if err == nil {
				results[i].Shard = fmt.Sprintf("%d/2", i)
				err = results[i].Err()
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range results {
		if d := r.Start.Sub(start); d < 0 || d > time.Second {
			t.Errorf("shard %s started %v after -start-at", r.Shard, d)
		}
	}
	// Through JSON and back, shards in either order, among other log lines.
	var in bytes.Buffer
	in.WriteString("time=... level=INFO msg=starting\n")
	for _, i := range []int{1, 0} {
		b, _ := json.MarshalIndent(results[i], "", "  ")
		fmt.Fprintf(&in, "%s\nsome other line\n", b)
	}
	read, err := ReadResults(&in)
	if err != nil || len(read) != 2 {
		t.Fatalf("read %d results: %v", len(read), err)
	}
	m, err := Merge(read)
	if err != nil {
		t.Fatal(err)
	}
	all := newHistogram()
	for _, r := range results {
		h, _ := decodeHistogram(r.Histogram)
		all.Merge(h)
	}
	if m.Ops != results[0].Ops+results[1].Ops || m.Conns != 4 || m.Latency.Count != all.TotalCount() ||
		m.Latency.P99 != time.Duration(all.ValueAtPercentile(99)) {
		t.Errorf("merged %d ops, %d conns, %+v; shards %d+%d", m.Ops, m.Conns, m.Latency, results[0].Ops, results[1].Ops)
	}
	if len(m.Shards) != 2 || m.Shards[0].Shard != "0/2" || m.Shards[1].Ops != results[1].Ops {
		t.Errorf("shard rows %+v", m.Shards)
	}
	var text bytes.Buffer
	m.WriteText(&text)
	if !regexp.MustCompile(`(?m)^  1/2 +- +2 +\d+\.\d +\S+ +\S+ +0 +0$`).MatchString(text.String()) {
		t.Errorf("no row for shard 1/2 in\n%s", text.String())
	}
}

func TestMergeRefusesWhatIsNotOneRun(t *testing.T) {
	r := func(shard string, mode Mode) *Result {
		return &Result{Mode: mode, Unit: "message", Shard: shard, Ops: 1}
	}
	tests := []struct {
		name string
		in   []*Result
		want string
	}{
		{"nothing", nil, "no results to merge"},
		{"missing", []*Result{r("0/3", PingPong), r("2/3", PingPong)}, "have 2 of 3 shards; missing [1/3]"},
		{"twice", []*Result{r("0/2", PingPong), r("0/2", PingPong)}, "shard 0/2 appears twice"},
		{"different N", []*Result{r("0/2", PingPong), r("1/3", PingPong)}, "not one run"},
		{"different modes", []*Result{r("0/2", PingPong), r("1/2", Cycle)}, "not one run"},
		{"different message types", []*Result{r("0/2", PingPong), func() *Result { x := r("1/2", PingPong); x.MessageType = TextMessages; return x }()}, "not one run"},
		{"no histogram", []*Result{{Mode: PingPong, Latency: &Latency{Count: 1}}}, "no histogram"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Merge(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// kubectl logs --prefix puts the pod before every line.
func TestReadResultsWithKubectlPrefixes(t *testing.T) {
	in := "[pod/bench-0-x/bench] {\n[pod/bench-0-x/bench]   \"mode\": \"pingpong\",\n[pod/bench-0-x/bench]   \"ops\": 7\n[pod/bench-0-x/bench] }\n" +
		"[pod/bench-1-y/bench] echod: bench: 1 connection error\n" +
		"[pod/bench-1-y/bench] {\"mode\": \"pingpong\", \"ops\": 5}\n" +
		// Two pods' lines interleaved, as kubectl logs -f --prefix gives them.
		"[pod/bench-2-z/bench] {\n[pod/bench-3-w/bench] {\n[pod/bench-2-z/bench]   \"mode\": \"pingpong\", \"ops\": 2\n" +
		"[pod/bench-3-w/bench]   \"mode\": \"pingpong\", \"ops\": 3\n[pod/bench-3-w/bench] }\n[pod/bench-2-z/bench] }\n" +
		"{\"level\": \"info\"}\n{ broken\n"
	got, err := ReadResults(strings.NewReader(in))
	if err != nil || len(got) != 4 {
		t.Fatalf("read %d results, %v", len(got), err)
	}
	for i, want := range []int64{7, 5, 2, 3} {
		if got[i].Ops != want {
			t.Errorf("result %d has %d ops, want %d", i, got[i].Ops, want)
		}
	}
}

func FuzzReadResults(f *testing.F) {
	f.Add("{\"mode\":\"pingpong\"}\n{\"mode\":\"x\"")
	f.Add("[pod/a/b] {\n}\n")
	f.Add(`{"mode":"pingpong","mismatches":1,"errors":2,"latency":{"count":1},"histogram":"HISTFAAAAB942pNpmSzMwMDAxAABzFCaEUoz2X+AiAEAQg8DNQ=="}`)
	f.Add(`{"mode":"pingpong","shard":"0/1","series":[{"at":1,"seconds":0,"latency":{"p50_ns":-5}}],"start":"2026-01-01T00:00:00Z"}`)
	f.Fuzz(func(t *testing.T, s string) {
		// Whatever a file holds, bench merge and report end in an error
		// or a result, never a panic.
		results, err := ReadResults(strings.NewReader(s))
		if err != nil || len(results) == 0 {
			return
		}
		m, err := Merge(results)
		if err != nil {
			return
		}
		m.Verdict(Thresholds{MaxP99: 1, MinRate: 1, MaxErrors: 0})
		m.WriteText(io.Discard)
		m.WriteHgrm(io.Discard)
		WriteHTML(io.Discard, []Labeled{{Label: "x", Result: m}})
	})
}

// The .hgrm text is HdrHistogram's own, so its plotter reads it.
func TestHgrmFormat(t *testing.T) {
	h := newHistogram()
	for i := int64(1); i <= 1000; i++ {
		h.RecordValue(i * 1000) // 1µs to 1ms
	}
	var b bytes.Buffer
	if err := writeHgrm(&b, h, 1e6); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	want := map[int]string{
		0: "       Value     Percentile TotalCount 1/(1-Percentile)",
		1: "",
		2: "       0.001 0.000000000000          1           1.00",
		3: "       0.100 0.100000000000        100           1.11",
	}
	for i, w := range want {
		if lines[i] != w {
			t.Errorf("line %d: %q, want %q", i, lines[i], w)
		}
	}
	tail := strings.Join(lines[len(lines)-5:], "\n")
	wantTail := "       1.000 0.999023437500       1000        1024.00\n" +
		"       1.000 1.000000000000       1000\n" +
		"#[Mean    =        0.501, StdDeviation   =        0.289]\n" +
		"#[Max     =        1.000, Total count    =         1000]\n" +
		"#[Buckets =           27, SubBuckets     =         2048]"
	if tail != wantTail {
		t.Errorf("ends\n%s\nwant\n%s", tail, wantTail)
	}
	if err := (&Result{}).WriteHgrm(&b); err == nil {
		t.Error("a result without latencies wrote a spectrum")
	}
}

// Every mode that measures latency carries its histogram, for bench merge.
func TestEveryLatencyModeCarriesItsHistogram(t *testing.T) {
	addr := serveTCP(t, echo)
	for _, mode := range []Mode{Cycle, Idle} {
		cfg := smoke(addr, mode)
		cfg.PID = 0
		if mode == Idle {
			cfg.Size = 1
		}
		res := run(t, cfg)
		if res.Latency == nil || res.Histogram == "" {
			t.Errorf("%s: latency %+v, histogram %q", mode, res.Latency, res.Histogram)
		}
	}
}

// Shards that did not start together are merged with a hint that their
// rates add up as if they had.
func TestMergeHintsAtShardsApart(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	r := func(shard string, start time.Time) *Result {
		return &Result{Mode: PingPong, Unit: "message", Shard: shard, Start: start, Ops: 10, OpsPerSec: 5}
	}
	m, err := Merge([]*Result{r("0/2", t0), r("1/2", t0.Add(300*time.Millisecond))})
	if err != nil || len(m.Hints) != 0 || m.OpsPerSec != 10 {
		t.Fatalf("together: %+v, %v", m, err)
	}
	m, err = Merge([]*Result{r("0/2", t0), r("1/2", t0.Add(4*time.Second))})
	if err != nil || len(m.Hints) != 1 || !strings.Contains(m.Hints[0], "started up to 4s apart") {
		t.Fatalf("apart: %q, %v", m.Hints, err)
	}
}

// What a report shows of its input is escaped: a file name is not markup.
func TestHTMLEscapes(t *testing.T) {
	res := &Result{Mode: PingPong, Unit: "message", Addr: "<b>x</b>", Series: []Second{{At: 1, Seconds: 1, Ops: 5}, {At: 2, Seconds: 1, Ops: 6}}}
	var b bytes.Buffer
	if err := WriteHTML(&b, []Labeled{{Label: `<script>alert(1)</script>.json`, Result: res}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script>") || strings.Contains(b.String(), "<b>x") {
		t.Errorf("unescaped input in\n%s", b.String())
	}
	if err := WriteHTML(&b, nil); err == nil {
		t.Error("a report of no runs")
	}
}

// Idle and UDP shards add up their own counts, so the merged verdict sees
// an idle connection that was no longer served.
func TestMergeAddsIdleAndUDPCounts(t *testing.T) {
	idle := func(shard string, opened, served int64) *Result {
		return &Result{Mode: Idle, Unit: "connection", Shard: shard, Ops: opened, Idle: &IdleStats{Opened: opened, Served: served, OpenSeconds: float64(opened) / 100}}
	}
	m, err := Merge([]*Result{idle("0/2", 100, 100), idle("1/2", 50, 49)})
	if err != nil || *m.Idle != (IdleStats{Opened: 150, Served: 149, OpenSeconds: 1}) {
		t.Fatalf("idle: %+v, %v", m.Idle, err)
	}
	if err := m.Err(); err == nil || !strings.Contains(err.Error(), "1 of 150 idle connections") {
		t.Errorf("merged idle verdict: %v", err)
	}
	udp := func(shard string, sent, lost int64) *Result {
		return &Result{Mode: UDP, Unit: "datagram", Shard: shard, Ops: sent - lost, UDP: &UDPStats{Sent: sent, Lost: lost}}
	}
	m, err = Merge([]*Result{udp("0/2", 100, 1), udp("1/2", 200, 2)})
	if err != nil || *m.UDP != (UDPStats{Sent: 300, Lost: 3}) {
		t.Fatalf("udp: %+v, %v", m.UDP, err)
	}
}

// Cancelling a run that waits for its start time ends the wait.
func TestCancelWhileWaitingToStart(t *testing.T) {
	cfg := smoke(serveTCP(t, echo), PingPong)
	cfg.StartAt = time.Now().Add(time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	res, err := Run(ctx, cfg)
	if err != nil || !res.Interrupted || res.Ops != 0 {
		t.Fatalf("got %+v, %v; want an interrupted, empty result", res, err)
	}
}
