package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
	"golang.org/x/time/rate"
)

// messages returns a handler that reads the connection's stream as
// messages of size bytes, numbered from 0, and writes back what change
// returns for each batch of n of them.
func messages(size, n int, change func(first int, batch [][]byte) [][]byte) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		for first := 0; ; first += n {
			batch := make([][]byte, n)
			for i := range batch {
				batch[i] = make([]byte, size)
				if _, err := io.ReadFull(c, batch[i]); err != nil {
					return
				}
			}
			for _, m := range change(first, batch) {
				if _, err := c.Write(m); err != nil {
					return
				}
			}
		}
	}
}

// A server that drops, swaps or retimes a message is caught by the header
// each scheduled message carries, and the report names the message.
func TestScheduledMessagesCarryTheirSequence(t *testing.T) {
	const size = 64
	tests := []struct {
		name   string
		handle func(c *net.TCPConn)
		want   string
	}{
		{"dropped", messages(size, 1, func(first int, b [][]byte) [][]byte {
			if first == 5 {
				return nil
			}
			return b
		}), "message 6 came back where message 5 was due"},
		{"swapped", messages(size, 2, func(first int, b [][]byte) [][]byte {
			if first == 4 {
				return [][]byte{b[1], b[0]}
			}
			return b
		}), "message 5 came back where message 4 was due"},
		{"retimed", messages(size, 1, func(first int, b [][]byte) [][]byte {
			if first == 3 {
				b[0][15]++
			}
			return b
		}), "message 3 came back with its send time changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smoke(serveTCP(t, tt.handle), PingPong)
			cfg.Conns, cfg.Depth, cfg.Size, cfg.Rate = 1, 4, size, 1000
			cfg.Warmup, cfg.Timeout = 0, time.Second
			res := run(t, cfg)
			if res.Mismatches == 0 || res.FirstMismatch == nil {
				t.Fatalf("no mismatch reported: %+v", res)
			}
			if got := res.FirstMismatch.Text; !strings.Contains(got, tt.want) {
				t.Errorf("first mismatch %q; want %q", got, tt.want)
			}
			if err := res.Err(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Err() = %v; want it to name %q", err, tt.want)
			}
		})
	}
}

// A correct server passes with the header in place, and the report has
// both latencies and the count of messages behind schedule.
func TestScheduledRunMeasuresFromBothSends(t *testing.T) {
	cfg := smoke(serveTCP(t, echo), PingPong)
	cfg.Size, cfg.Rate, cfg.Depth = HeaderSize, 2000, 2
	res := run(t, cfg)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	sc := res.Schedule
	if sc == nil || sc.LatencyFromSend == nil || res.Latency == nil || sc.HistogramFromSend == "" {
		t.Fatalf("schedule figures missing: %+v", sc)
	}
	if sc.LatencyFromSend.Count != res.Latency.Count {
		t.Errorf("%d latencies from the actual send, %d from the scheduled one", sc.LatencyFromSend.Count, res.Latency.Count)
	}
	// A message cannot come back before it was sent, which is never
	// before it was scheduled.
	if sc.LatencyFromSend.Max > res.Latency.Max {
		t.Errorf("max from the actual send %v is over the max from the scheduled send %v", sc.LatencyFromSend.Max, res.Latency.Max)
	}
	if sc.Behind < 0 || sc.Behind > res.Ops || sc.Slack != behindSlack {
		t.Errorf("behind %d of %d, slack %v", sc.Behind, res.Ops, sc.Slack)
	}
	var text strings.Builder
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"from scheduled send", "from actual send", "Behind schedule:", "2000/s scheduled"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}
	html := map[string]bool{}
	for _, row := range summaryRows(res) {
		html[row[0]] = true
	}
	if !html["Latency from actual send"] || !html["Behind schedule"] {
		t.Errorf("HTML summary lacks the schedule's rows: %v", html)
	}
}

// A server that stalls holds the writer back: the messages due meanwhile
// are sent late, and counted behind schedule.
func TestScheduledWriterBehindAStalledServerIsCounted(t *testing.T) {
	cfg := smoke(serveTCP(t, stallAt(64*20, 100*time.Millisecond)), PingPong)
	cfg.Conns, cfg.Rate, cfg.Warmup = 1, 500, 0
	cfg.Duration = 400 * time.Millisecond
	res := run(t, cfg)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	// At 500/s, a 100 ms stall holds back the ~50 messages due in it.
	if res.Schedule.Behind < 20 {
		t.Errorf("%d messages behind schedule; the 100 ms stall should hold back most of the 50 due in it", res.Schedule.Behind)
	}
}

func near(got int64, want float64) bool {
	return math.Abs(float64(got)-want) <= 0.2*want+5
}

// Steps run each rate for the duration, with a row each; a ramp sends as
// many messages as its average rate would.
func TestRampAndSteps(t *testing.T) {
	addr := serveTCP(t, echo)
	t.Run("steps", func(t *testing.T) {
		cfg := smoke(addr, PingPong)
		cfg.Conns, cfg.Steps = 2, []float64{200, 600}
		cfg.Duration = 500 * time.Millisecond
		res := run(t, cfg)
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		if len(res.Steps) != 2 {
			t.Fatalf("%d steps: %+v", len(res.Steps), res.Steps)
		}
		var sum int64
		for i, s := range res.Steps {
			sum += s.Ops
			if want := cfg.Steps[i] * 0.5; s.Rate != cfg.Steps[i] || !near(s.Ops, want) {
				t.Errorf("step %d at %v/s: %d messages, want about %.0f", i, s.Rate, s.Ops, want)
			}
			if s.Latency == nil || s.LatencyFromSend == nil {
				t.Errorf("step %d has no latency: %+v", i, s)
			}
		}
		if res.Ops != sum || res.Latency.Count != sum || res.Schedule.LatencyFromSend.Count != sum {
			t.Errorf("the run has %d messages, %d latencies; its steps %d", res.Ops, res.Latency.Count, sum)
		}
		if math.Abs(res.Seconds-1) > 0.1 {
			t.Errorf("two steps of 0.5s measured %.2fs", res.Seconds)
		}
		var text strings.Builder
		res.WriteText(&text)
		if !strings.Contains(text.String(), "Steps (2;") || !strings.Contains(text.String(), "steps of 200, 600/s") {
			t.Errorf("report lacks the steps:\n%s", text.String())
		}
	})
	t.Run("ramp", func(t *testing.T) {
		cfg := smoke(addr, PingPong)
		cfg.Conns, cfg.Rate, cfg.RampTo = 2, 100, 900
		cfg.Duration = 2 * time.Second
		res := run(t, cfg)
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		// 100/s rising to 900/s over two seconds is 1000 messages: 300
		// in the first second (100/s to 500/s), 700 in the second.
		if !near(res.Ops, 1000) {
			t.Errorf("ramp sent %d messages, want about 1000", res.Ops)
		}
		// Looser than near: a busy machine's stall moves messages from
		// one second to the next. A constant 500/s would be outside.
		roughly := func(got int64, want float64) bool { return math.Abs(float64(got)-want) <= 0.3*want+10 }
		if len(res.Series) < 2 || !roughly(res.Series[0].Ops, 300) || !roughly(res.Series[1].Ops, 700) {
			t.Errorf("ramp's seconds %+v; want about 300 messages, then 700", res.Series)
		}
		if res.RampTo != 900 {
			t.Errorf("result's ramp ends at %v", res.RampTo)
		}
	})
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in           string
		rate, rampTo float64
		steps        []float64
	}{
		{"0", 0, 0, nil},
		{"5000", 5000, 0, nil},
		{"1000:10000", 1000, 10000, nil},
		{"10000:1000", 10000, 1000, nil},
		{"1000,2000,4000", 0, 0, []float64{1000, 2000, 4000}},
		{"2.5", 2.5, 0, nil},
	}
	for _, tt := range tests {
		rate, rampTo, steps, err := ParseRate(tt.in)
		if err != nil || rate != tt.rate || rampTo != tt.rampTo || !slices.Equal(steps, tt.steps) {
			t.Errorf("ParseRate(%q) = %v, %v, %v, %v", tt.in, rate, rampTo, steps, err)
		}
	}
	for _, in := range []string{"", "abc", "5:", ":5", "0:100", "0,1000", "1000,", "-5", "NaN", "Inf", "1e10", "1:2:3", "1,2:3"} {
		if _, _, _, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"0", "1000:10000", "1,2,3", "5:", "abc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rate, rampTo, steps, err := ParseRate(s)
		if err != nil {
			return
		}
		ok := func(r float64) bool { return r > 0 && r <= MaxRate }
		switch {
		case len(steps) > 0:
			if rate != 0 || rampTo != 0 || len(steps) < 2 || !slices.ContainsFunc(steps, ok) || slices.ContainsFunc(steps, func(r float64) bool { return !ok(r) }) {
				t.Errorf("ParseRate(%q) = %v, %v, %v", s, rate, rampTo, steps)
			}
		case rampTo != 0:
			if !ok(rate) || !ok(rampTo) {
				t.Errorf("ParseRate(%q) = %v, %v", s, rate, rampTo)
			}
		case rate != 0 && !ok(rate):
			t.Errorf("ParseRate(%q) = %v", s, rate)
		}
		cfg := Config{Addr: "a:1", Rate: rate, RampTo: rampTo, Steps: steps}
		cfg.Validate() // must not panic
	})
}

// Shards split a ramp's ends and each step.
func TestShardSplitsRampsAndSteps(t *testing.T) {
	steps := []float64{1000, 3000}
	for _, cfg := range []Config{
		{Addr: "a:1", Conns: 4, Rate: 1000, RampTo: 4000},
		{Addr: "a:1", Conns: 4, Steps: steps},
	} {
		var rate, rampTo float64
		sum := make([]float64, len(cfg.Steps))
		for i := range 4 {
			c, err := cfg.Shard(i, 4)
			if err != nil {
				t.Fatal(err)
			}
			rate, rampTo = rate+c.Rate, rampTo+c.RampTo
			for j, s := range c.Steps {
				sum[j] += s
			}
			if err := c.Validate(); err != nil {
				t.Errorf("shard %d/4: %v", i, err)
			}
		}
		if rate != cfg.Rate || rampTo != cfg.RampTo || !slices.Equal(sum, cfg.Steps) {
			t.Errorf("shards add up to rate %v, ramp to %v, steps %v; want %v, %v, %v", rate, rampTo, sum, cfg.Rate, cfg.RampTo, cfg.Steps)
		}
	}
	if !slices.Equal(steps, []float64{1000, 3000}) {
		t.Errorf("sharding changed the steps given: %v", steps)
	}
}

func TestValidateRate(t *testing.T) {
	base := Config{Addr: "a:1"}
	tests := []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Rate, c.Size = 100, 8 }, "size must be at least 16 bytes"},
		{func(c *Config) { c.RampTo = 100 }, "a ramp needs a rate to start from"},
		{func(c *Config) { c.Steps, c.Rate = []float64{1, 2}, 5 }, "exclude one another"},
		{func(c *Config) { c.Steps = []float64{1, 0} }, "each step's rate must be above 0"},
		{func(c *Config) { c.Rate, c.RampTo, c.Count = 1, 2, 10 }, "count does not apply"},
		{func(c *Config) { c.Steps, c.Mode = []float64{1}, Bulk }, "rate applies to pingpong only"},
		{func(c *Config) { c.Rate = 2e9 }, "rate must be at most"},
		{func(c *Config) { c.Rate = math.NaN() }, "rate must not be negative, got NaN"},
		{func(c *Config) { c.Rate, c.RampTo = 10, -1 }, "rate must not be negative, got -1"},
		{func(c *Config) { c.Rate, c.Conns = 0.05, 1 }, "a rate of 0.05/s over 10s schedules less than one message per connection (1)"},
		{func(c *Config) { c.Steps, c.Conns, c.Duration = []float64{100, 5}, 10, time.Second }, "a rate of 5/s over 1s schedules less than one message per connection (10)"},
	}
	for _, tt := range tests {
		c := base
		tt.change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v; want %q", c, err, tt.want)
		}
	}
}

// limited returns a handler that echoes each message of size bytes when
// lim allows, the limit shared by every connection: a server whose
// capacity is lim's rate in messages per second.
func limited(size int, lim *rate.Limiter) func(c *net.TCPConn) {
	return func(c *net.TCPConn) {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if lim.Wait(context.Background()) != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}
}

// A search against a server that echoes at most 200 messages a second
// finds a rate it keeps up with, no higher than that, and a rate above it
// that it did not keep up with. Above capacity the queue grows for the
// whole step: the lag after 0.7 s is 0.7 s times the excess, so the
// bisection's points above 200/s (400, 300, 250, 225, 212.5: 6.25% over or
// more) lag 44 ms or more, over twice the 20 ms bound. A busy machine's
// stall can fail a rate below capacity too, which only lowers the rate
// found.
func TestFindMaxRateStaysUnderTheServersCapacity(t *testing.T) {
	const capacity = 200
	addr := serveTCP(t, limited(64, rate.NewLimiter(capacity, 1)))
	cfg := smoke(addr, PingPong)
	cfg.Conns, cfg.Rate = 4, 50
	cfg.Warmup, cfg.Duration = 100*time.Millisecond, 600*time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	th := Thresholds{MaxP99: 20 * time.Millisecond, MaxErrors: -1}
	res, err := FindMaxRate(ctx, cfg, th, 8)
	if err != nil {
		t.Fatal(err)
	}
	s := res.Search
	t.Logf("found %v/s, %v/s over, in %d steps", s.Rate, s.Over, len(res.Steps))
	for _, st := range res.Steps {
		t.Logf("  %v/s: %d messages, p99 %v, missed %v", st.Rate, st.Ops, st.Latency.P99, st.Missed)
	}
	if s.Rate <= 0 || s.Rate > capacity {
		t.Errorf("found %v/s; the server echoes at most %d/s", s.Rate, capacity)
	}
	if s.Over <= s.Rate || s.Over > 2*capacity {
		t.Errorf("lowest rate over the bound %v/s, found %v/s", s.Over, s.Rate)
	}
	if len(res.Steps) > 8 || len(res.Steps) < 3 {
		t.Errorf("%d steps, at most 8 allowed", len(res.Steps))
	}
	if err := res.Verdict(th); err != nil {
		t.Errorf("verdict: %v", err)
	}
	var text strings.Builder
	res.WriteText(&text)
	if want := fmt.Sprintf("Max rate: %s/s within p99 20ms, no errors (%s/s missed them;", perSecond(s.Rate), perSecond(s.Over)); !strings.Contains(text.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, text.String())
	}
}

// A search where no rate keeps within the bound fails, naming what the
// lowest rate missed.
func TestFindMaxRateWithNoRateWithin(t *testing.T) {
	addr := serveTCP(t, limited(64, rate.NewLimiter(50, 1)))
	cfg := smoke(addr, PingPong)
	cfg.Conns, cfg.Rate = 1, 400
	cfg.Warmup, cfg.Duration = 0, 300*time.Millisecond
	th := Thresholds{MaxP99: 5 * time.Millisecond, MaxErrors: -1}
	res, err := FindMaxRate(context.Background(), cfg, th, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Search.Rate != 0 || res.Search.Over != 200 {
		t.Fatalf("steps %+v, search %+v", res.Steps, res.Search)
	}
	err = res.Verdict(th)
	if err == nil || !strings.Contains(err.Error(), "no rate tried kept within p99 5ms") || !strings.Contains(err.Error(), "the lowest, 200/s, missed: p99") {
		t.Errorf("verdict: %v", err)
	}
	// A server at 50/s holds back most messages of 200/s and 400/s.
	if !slices.ContainsFunc(res.Hints, func(h string) bool {
		return strings.Contains(h, "of messages were sent more than 2.00ms after their scheduled time: either the server is slower")
	}) {
		t.Errorf("no hint about the messages behind schedule: %q", res.Hints)
	}
	for _, cfg := range []Config{{Addr: addr, Rate: 1, RampTo: 2}, {Addr: addr, Steps: []float64{1, 2}}} {
		if _, err := FindMaxRate(context.Background(), cfg, th, 0); err == nil {
			t.Errorf("searched from %+v", cfg)
		}
	}
	if _, err := FindMaxRate(context.Background(), Config{Addr: addr}, Thresholds{MaxErrors: -1}, 0); err == nil {
		t.Error("searched without a latency bound")
	}
}

// Shards of a run in steps each run their share of each step, and bench
// merge adds them up step by step, their histograms exactly.
func TestShardedStepsMerge(t *testing.T) {
	cfg := smoke(serveTCP(t, echo), PingPong)
	cfg.Conns, cfg.Steps, cfg.Duration = 2, []float64{200, 400}, 400*time.Millisecond
	results := make([]*Result, 2)
	var wg sync.WaitGroup
	for i := range results {
		c, err := cfg.Shard(i, 2)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			res, err := Run(context.Background(), c)
			if err != nil {
				t.Error(err)
				return
			}
			res.Shard = fmt.Sprintf("%d/2", i)
			results[i] = res
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, r := range results {
		if len(r.Steps) != 2 || r.Steps[0].Rate != 100 || r.Steps[1].Rate != 200 {
			t.Fatalf("shard %d ran steps %+v; want 100/s and 200/s", i, r.Steps)
		}
	}
	m, err := Merge(results)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Err(); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for i, s := range m.Steps {
		sum += s.Ops
		want := cfg.Steps[i] * cfg.Duration.Seconds()
		if s.Rate != cfg.Steps[i] || !near(s.Ops, want) || s.Latency == nil || s.Latency.Count != s.Ops || s.LatencyFromSend.Count != s.Ops {
			t.Errorf("merged step %d: %+v; want %v/s, about %.0f messages with as many latencies", i, s, cfg.Steps[i], want)
		}
	}
	if sum != m.Ops || m.Schedule == nil || m.Schedule.LatencyFromSend.Count != m.Ops {
		t.Errorf("merged: %d messages, steps %d, schedule %+v", m.Ops, sum, m.Schedule)
	}
	results[1].Steps = results[1].Steps[:1]
	if _, err := Merge(results); err == nil || !strings.Contains(err.Error(), "ran 1 step, shard 0/2 2") {
		t.Errorf("merged shards with different steps: %v", err)
	}
}

// A server that sends what it was never sent, while the next message is
// not due for an hour, does not hold up the end of the run: the reader
// waiting for the writer's record of a message stops on cancellation.
func TestScheduledReaderStopsWhileAServerSpeaksUnasked(t *testing.T) {
	spoke := make(chan struct{})
	addr := serveTCP(t, func(c *net.TCPConn) {
		msg := make([]byte, 64)
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		c.Write(msg)
		c.Write(make([]byte, 64))
		close(spoke)
		io.Copy(io.Discard, c)
	})
	cfg := smoke(addr, PingPong)
	cfg.Conns, cfg.Rate, cfg.Warmup = 1, 1.0/3600, 0
	cfg.Duration, cfg.Timeout = 2*time.Hour, 2*time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		<-spoke
		// Cancel once the reader has read the unasked bytes and waits
		// for a record of them.
		testkit.WaitFor(t, "the reader to wait for the writer", func() bool {
			return readerWaits(ctx)
		})
		cancel()
	})
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted {
		t.Errorf("run not interrupted: %+v", res)
	}
}

// readerWaits reports whether a readEchoes goroutine is blocked on a
// channel (or ctx is done): for the test above, whose hang it would be.
func readerWaits(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bench.(*runner).readEchoes") && (strings.Contains(g, "[select") || strings.Contains(g, "[chan receive")) {
			return true
		}
	}
	return false
}

// A search that halves the rate stops before a step would schedule less
// than one message per connection.
func TestFindMaxRateStopsHalvingAtOneMessagePerConnection(t *testing.T) {
	addr := serveTCP(t, func(c *net.TCPConn) {
		buf := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // a server slower than the bound
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	cfg := smoke(addr, PingPong)
	cfg.Conns, cfg.Rate = 1, 400
	cfg.Warmup, cfg.Duration = 0, 300*time.Millisecond
	th := Thresholds{MaxP99: 5 * time.Millisecond, MaxErrors: -1}
	res, err := FindMaxRate(context.Background(), cfg, th, 50)
	if err != nil {
		t.Fatal(err)
	}
	// 400, 200, ... 6.25/s; 3.125/s would be under one message in 300 ms.
	var rates []float64
	for _, s := range res.Steps {
		rates = append(rates, s.Rate)
	}
	if want := []float64{400, 200, 100, 50, 25, 12.5, 6.25}; !slices.Equal(rates, want) {
		t.Errorf("steps at %v; want %v", rates, want)
	}
	if res.Search.Rate != 0 || res.Verdict(th) == nil {
		t.Errorf("a server 10 ms slow kept p99 5ms: %+v", res.Search)
	}
}

// A search that found no rate says so, and when the latency from the
// actual send was within the bound, that the sending was late, not the
// server.
func TestSearchVerdictNamesALateLoadGenerator(t *testing.T) {
	th := Thresholds{MaxP99: 5 * time.Millisecond, MaxErrors: -1}
	step := func(fromSend time.Duration) *Result {
		return &Result{Mode: PingPong, Ops: 100, Search: &RateSearch{Thresholds: th.String()}, Steps: []Step{
			{Rate: 20, Ops: 60, Latency: &Latency{P99: 50 * time.Millisecond}, LatencyFromSend: &Latency{P99: fromSend}, Behind: 7,
				Missed: []string{"p99 50.00ms is over -max-p99 5ms by 45.00ms"}},
			{Rate: 40, Ops: 40, Latency: &Latency{P99: 80 * time.Millisecond}, Missed: []string{"p99 80.00ms is over -max-p99 5ms by 75.00ms"}},
		}}
	}
	err := step(time.Millisecond).Verdict(th)
	want := "no rate tried kept within p99 5ms, no errors: the lowest, 20/s, missed: p99 50.00ms is over -max-p99 5ms by 45.00ms (from the actual send its p99 was 1.00ms, within the bound: 7 messages were sent behind schedule"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("verdict %v; want %q", err, want)
	}
	err = step(40 * time.Millisecond).Verdict(th)
	if err == nil || strings.Contains(err.Error(), "from the actual send") {
		t.Errorf("a server slow from the actual send too: %v", err)
	}
	found := step(time.Millisecond)
	found.Search.Rate = 10
	if err := found.Verdict(th); err != nil {
		t.Errorf("a search that found a rate fails: %v", err)
	}
	found.Mismatches, found.FirstMismatch = 1, &Mismatch{Text: "byte 3 differs"}
	if err := found.Verdict(th); err == nil || !strings.Contains(err.Error(), "byte 3 differs") {
		t.Errorf("a search with a mismatch: %v", err)
	}
}
