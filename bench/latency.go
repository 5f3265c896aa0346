package bench

import (
	"fmt"
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
//
// The shards hold only what was recorded since the last flush: once a
// second the run flushes them into the whole run's histogram, and the
// flushed interval is that second's histogram, so the per-second
// percentiles cost the hot path nothing.
type latencies struct {
	shards []latencyShard

	mu    sync.Mutex // serializes flushes; guards total and last
	total *hdrhistogram.Histogram
	last  *hdrhistogram.Histogram
}

type latencyShard struct {
	mu    sync.Mutex
	h     *hdrhistogram.Histogram
	spare *hdrhistogram.Histogram // swapped with h by a flush, so the lock is held for a swap only
	_     [32]byte                // keeps neighbouring locks off one cache line
}

func newLatencies() *latencies {
	n := 2 * runtime.GOMAXPROCS(0)
	l := &latencies{shards: make([]latencyShard, n), total: newHistogram(), last: newHistogram()}
	for i := range l.shards {
		l.shards[i].h = newHistogram()
		l.shards[i].spare = newHistogram()
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

// flush moves what the shards recorded since the last flush into the
// whole run's histogram, and returns a summary of that interval alone (nil
// if nothing was recorded in it).
func (l *latencies) flush() *Latency {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	return summarize(l.last)
}

func (l *latencies) flushLocked() {
	l.last.Reset()
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		h := s.h
		s.h, s.spare = s.spare, h
		s.mu.Unlock()
		l.last.Merge(h)
		h.Reset()
	}
	l.total.Merge(l.last)
}

// summary flushes the shards and summarizes the whole run; nil if nothing
// was recorded.
func (l *latencies) summary() *Latency {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
	return summarize(l.total)
}

// encoded returns the whole run's histogram in HdrHistogram's compressed
// V2 encoding, base64: what bench merge adds up and other HdrHistogram
// tools read. Call it after summary.
func (l *latencies) encoded() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total.TotalCount() == 0 {
		return "", nil
	}
	b, err := l.total.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return "", fmt.Errorf("encode latency histogram: %w", err)
	}
	return string(b), nil
}

// summarize returns h's percentiles, or nil for an empty h.
func summarize(h *hdrhistogram.Histogram) *Latency {
	if h.TotalCount() == 0 {
		return nil
	}
	return &Latency{
		Count: h.TotalCount(),
		Mean:  time.Duration(h.Mean()),
		P50:   time.Duration(h.ValueAtPercentile(50)),
		P90:   time.Duration(h.ValueAtPercentile(90)),
		P99:   time.Duration(h.ValueAtPercentile(99)),
		P999:  time.Duration(h.ValueAtPercentile(99.9)),
		Max:   time.Duration(h.Max()),
	}
}

// decodeHistogram decodes a Result's Histogram field.
func decodeHistogram(s string) (*hdrhistogram.Histogram, error) {
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("decode latency histogram: %w", err)
	}
	return h, nil
}
