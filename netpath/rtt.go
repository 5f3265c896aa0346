package netpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"syscall"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// echoSize is the size of each small echo that times the round trip: one
// small segment.
const echoSize = 32

// RTT is the round-trip time of small echoes, one at a time.
type RTT struct {
	Echoes int           `json:"echoes"`
	Min    time.Duration `json:"min_ns"`
	P50    time.Duration `json:"p50_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
	// Jitter is the mean difference between consecutive round trips
	// (RFC 3550's interarrival jitter, unsmoothed).
	Jitter time.Duration `json:"jitter_ns"`
	// Lost counts UDP echoes that never came back.
	Lost int    `json:"lost,omitempty"`
	Err  string `json:"error,omitempty"`
}

// measureRTT times cfg.Echoes small echoes on s, one after the other.
func measureRTT(ctx context.Context, s *stream, cfg Config) *RTT {
	r := &RTT{}
	src := pattern.NewStream(1)
	msg, got := make([]byte, echoSize), make([]byte, echoSize)
	var samples []time.Duration
	for range cfg.Echoes {
		src.Read(msg)
		s.SetDeadline(time.Now().Add(cfg.Patience))
		start := time.Now()
		if _, err := s.Write(msg); err != nil {
			r.Err = fmt.Sprintf("echo %d: write: %v", len(samples)+1, err)
			break
		}
		if _, err := io.ReadFull(s, got); err != nil {
			r.Err = fmt.Sprintf("echo %d of %d bytes: %v", len(samples)+1, echoSize, readErr(err, cfg.Patience))
			if len(samples) == 0 && isTimeout(err) {
				r.Err += ": the server does not echo, or something on the path holds the bytes"
			}
			break
		}
		samples = append(samples, time.Since(start))
		if i := pattern.FirstDiff(got, msg); i >= 0 {
			r.Err = fmt.Sprintf("echo %d came back changed at byte %d", len(samples), i)
			break
		}
	}
	s.SetDeadline(time.Time{})
	r.Echoes = len(samples)
	if len(samples) == 0 {
		if r.Err == "" {
			r.Err = ctx.Err().Error()
		}
		return r
	}
	summarize(r, samples)
	return r
}

// summarize fills r's figures from samples, in the order taken.
func summarize(r *RTT, samples []time.Duration) {
	r.Echoes = len(samples)
	if len(samples) == 0 {
		return
	}
	var jitter time.Duration
	for i := 1; i < len(samples); i++ {
		d := samples[i] - samples[i-1]
		jitter += max(d, -d)
	}
	if len(samples) > 1 {
		r.Jitter = jitter / time.Duration(len(samples)-1)
	}
	sorted := slices.Sorted(slices.Values(samples))
	r.Min, r.Max = sorted[0], sorted[len(sorted)-1]
	r.P50 = quantile(sorted, 0.50)
	r.P99 = quantile(sorted, 0.99)
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// readErr words a read error: a deadline as the silence it was.
func readErr(err error, patience time.Duration) error {
	switch {
	case isTimeout(err):
		return fmt.Errorf("no reply within %v", patience)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the connection was closed (EOF)")
	case errors.Is(err, syscall.ECONNRESET):
		return errors.New("the connection was reset")
	}
	return err
}
