package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Shard returns the part of c that shard i of n runs (i from 0, as a
// Kubernetes Indexed Job numbers its pods): 1/n of the connections, of the
// rate (of each end of a ramp, of each step) and of the count, spread so
// that the n shards together run c. It
// fails when there are fewer connections, or a count smaller, than shards.
func (c Config) Shard(i, n int) (Config, error) {
	c = c.withDefaults()
	if n < 1 || i < 0 || i >= n {
		return c, fmt.Errorf("shard %d/%d: want 0 <= I < N", i, n)
	}
	if c.Conns < n {
		return c, fmt.Errorf("shard %d/%d: %d %s cannot be split %d ways", i, n, c.Conns, plural(int64(c.Conns), "connection", "connections"), n)
	}
	// A shard's count of 0 would mean no count at all.
	if c.Count > 0 && c.Count < int64(n) {
		return c, fmt.Errorf("shard %d/%d: a count of %d cannot be split %d ways", i, n, c.Count, n)
	}
	c.Conns = part(c.Conns, i, n)
	c.Count = part(c.Count, i, n)
	c.Rate /= float64(n)
	c.RampTo /= float64(n)
	steps := make([]float64, len(c.Steps))
	for j, r := range c.Steps {
		steps[j] = r / float64(n)
	}
	if len(steps) > 0 {
		c.Steps = steps
	}
	return c, nil
}

// part is shard i's share of total split n ways, the remainder going to
// the first shards.
func part[T int | int64](total T, i, n int) T {
	p := total / T(n)
	if T(i) < total%T(n) {
		p++
	}
	return p
}

// ParseShard parses "I/N", as -shard takes it.
func ParseShard(s string) (i, n int, err error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return 0, 0, fmt.Errorf("invalid shard %q: want I/N with 0 <= I < N, such as 0/4", s)
	}
	return i, n, nil
}

// ParseTime parses a start time: RFC 3339 (2026-12-05T09:00:00Z) or
// seconds since the Unix epoch, possibly fractional (1796461200.5).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || !(f >= 0 && f <= 1<<40) { // also refuses NaN
		return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339 (2006-01-02T15:04:05Z) or Unix seconds", s)
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
}

// waitUntil waits until t or until ctx is done, and reports whether t came.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
