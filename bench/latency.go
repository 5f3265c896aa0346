package bench

import (
	"runtime"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms hold nanoseconds from 1 ns to maxLatency with three
// significant digits; longer waits are recorded as maxLatency.
const maxLatency = 100 * time.Second

// latencies is a histogram of round-trip times, split into shards so that
// workers on different CPUs rarely wait for one another's lock. One
// histogram per connection would cost too much memory at thousands of
// connections.
type latencies struct {
	shards []latencyShard
}

type latencyShard struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
	_  [40]byte // keeps neighbouring locks off one cache line
}

func newLatencies() *latencies {
	n := 2 * runtime.GOMAXPROCS(0)
	l := &latencies{shards: make([]latencyShard, n)}
	for i := range l.shards {
		l.shards[i].h = newHistogram()
	}
	return l
}

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(maxLatency), 3)
}

// record adds d, measured by worker w.
func (l *latencies) record(w int, d time.Duration) {
	s := &l.shards[w%len(l.shards)]
	s.mu.Lock()
	// RecordValue fails only above the histogram's range, which the clamp rules out.
	_ = s.h.RecordValue(int64(min(max(d, 1), maxLatency)))
	s.mu.Unlock()
}

// summary merges the shards into percentiles; nil if nothing was recorded.
func (l *latencies) summary() *Latency {
	all := newHistogram()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	if all.TotalCount() == 0 {
		return nil
	}
	return &Latency{
		Count: all.TotalCount(),
		Mean:  time.Duration(all.Mean()),
		P50:   time.Duration(all.ValueAtPercentile(50)),
		P90:   time.Duration(all.ValueAtPercentile(90)),
		P99:   time.Duration(all.ValueAtPercentile(99)),
		P999:  time.Duration(all.ValueAtPercentile(99.9)),
		Max:   time.Duration(all.Max()),
	}
}
