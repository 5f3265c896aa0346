package netpath

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// Throughput is the rate of a verified bulk echo on one connection, and on
// two in parallel, and what that says about the limit.
type Throughput struct {
	// One is the echo rate of one connection, in bytes a second. An echo
	// carries the same bytes both ways, so it is the rate of the slower
	// direction (or of the server, if it is slower still).
	One float64 `json:"one_bytes_per_second"`
	// Two is the rate of two connections together.
	Two float64 `json:"two_bytes_per_second"`
	// Limit is "shared" when two connections get no more than one: the
	// link, or the server's total; "per-connection" when two get about
	// twice one: TCP's window over the round trip, or the server's pace
	// for each connection; "unclear" between the two.
	Limit string `json:"limit"`
	// Sure is how sure Limit is: "sure", "likely" or "unsure".
	Sure string `json:"sure"`
	// Ratio is Two/One.
	Ratio float64 `json:"ratio"`
	Err   string  `json:"error,omitempty"`
}

// measureThroughput echoes bulk on one connection, then on two at once.
func measureThroughput(ctx context.Context, d dialer, cfg Config) *Throughput {
	tp := &Throughput{}
	one, err := bulk(ctx, d, 1, cfg.Duration)
	if err != nil {
		tp.Err = err.Error()
		return tp
	}
	two, err := bulk(ctx, d, 2, cfg.Duration)
	if err != nil {
		tp.One = one
		tp.Err = "two connections: " + err.Error()
		return tp
	}
	tp.One, tp.Two = one, two
	tp.Ratio = two / one
	switch r := tp.Ratio; {
	case r < 1.35:
		tp.Limit = "shared"
		switch {
		case r < 0.8:
			// Two got less than one: something else took the machine
			// or the path meanwhile.
			tp.Sure = "unsure"
		case r < 1.15:
			tp.Sure = "sure"
		default:
			tp.Sure = "likely"
		}
	case r > 1.65:
		tp.Limit = "per-connection"
		switch {
		case r > 2.3:
			// Two got more than twice one: the first measurement was
			// held back by something else.
			tp.Sure = "unsure"
		case r > 1.85:
			tp.Sure = "sure"
		default:
			tp.Sure = "likely"
		}
	default:
		tp.Limit, tp.Sure = "unclear", "unsure"
	}
	return tp
}

// bulk echoes a pattern on n connections at once for about d and returns
// their rate together, in bytes a second, measured on what comes back after
// the first quarter of d (so that connecting and slow start do not count),
// every byte verified.
func bulk(ctx context.Context, d dialer, n int, dur time.Duration) (float64, error) {
	start := time.Now()
	from, until := start.Add(dur/4), start.Add(dur)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total float64
	var errs []string // one line: a finding is one line
	for i := range n {
		wg.Go(func() {
			rate, err := bulkOne(ctx, d, uint64(10+i), from, until)
			mu.Lock()
			defer mu.Unlock()
			total += rate
			if err != nil && !slices.Contains(errs, err.Error()) {
				errs = append(errs, err.Error())
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return total, errors.New(strings.Join(errs, "; "))
	}
	return total, nil
}

// bulkOne echoes a pattern on a connection of its own until until, and
// returns the rate of the echo it verified from from on.
func bulkOne(ctx context.Context, d dialer, seed uint64, from, until time.Time) (float64, error) {
	s, err := d.dial(ctx)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after the Abort below, which ends the writer
	defer s.Abort()
	wg.Go(func() {
		src := pattern.NewStream(seed)
		buf := make([]byte, 32<<10)
		for time.Now().Before(until) {
			src.Read(buf)
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	})
	v := pattern.NewVerifier(pattern.NewStream(seed))
	buf := make([]byte, 64<<10)
	s.SetReadDeadline(until)
	var base int64 = -1
	var baseAt, last time.Time
	for {
		k, err := s.Read(buf)
		now := time.Now()
		if _, verr := v.Write(buf[:k]); verr != nil {
			return 0, fmt.Errorf("the bulk echo differs from what was sent: %v", verr)
		}
		if k > 0 {
			last = now
			if base < 0 && now.After(from) {
				base, baseAt = v.Verified(), now
			}
		}
		if err != nil {
			if !isTimeout(err) {
				return 0, fmt.Errorf("the bulk echo stopped after %d bytes: %v", v.Verified(), err)
			}
			break
		}
	}
	if v.Verified() == 0 {
		return 0, fmt.Errorf("no bulk echo came back within %v", (until.Sub(from) * 4 / 3).Round(time.Millisecond))
	}
	if quiet := until.Sub(last); quiet > until.Sub(from)/2 {
		return 0, fmt.Errorf("the bulk echo stopped after %d bytes: nothing came back for the last %v", v.Verified(), quiet.Round(time.Millisecond))
	}
	if base < 0 || !last.After(baseAt) {
		return float64(v.Verified()) / until.Sub(from).Seconds() * 3 / 4, nil
	}
	return float64(v.Verified()-base) / last.Sub(baseAt).Seconds(), nil
}
