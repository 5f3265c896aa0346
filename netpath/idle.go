package netpath

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// idleSteps are the idle times probed (a tenth past each), up to the
// Config's MaxIdle, which is probed too: the common timeouts of NATs, load
// balancers and tunnels fall between them.
var idleSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute,
	30 * time.Minute, time.Hour,
}

// Idle is how long an idle connection (or UDP flow) lives.
type Idle struct {
	// Probes are the idle times tried, each on a connection of its own.
	Probes []IdleProbe `json:"probes"`
	// ClosedAfter is how long a connection stayed idle before something
	// closed it, unasked; 0 when nothing did.
	ClosedAfter time.Duration `json:"closed_after_ns,omitempty"`
	// Survived is the longest idle time after which an echo still came
	// back; DiedBy the shortest after which none did (0: none failed).
	Survived time.Duration `json:"survived_ns"`
	DiedBy   time.Duration `json:"died_by_ns,omitempty"`
	Err      string        `json:"error,omitempty"`
}

// IdleProbe is one connection left idle.
type IdleProbe struct {
	Idle time.Duration `json:"idle_ns"`
	// Outcome is "echoed" (an echo came back after the idle time),
	// "closed" (something closed the connection while it was idle, after
	// ClosedAfter), "dead" (the echo after the idle time got a reset, EOF
	// or no answer), "cancelled" (not needed: a shorter probe failed) or
	// "error".
	Outcome     string        `json:"outcome"`
	ClosedAfter time.Duration `json:"closed_after_ns,omitempty"`
	Err         string        `json:"error,omitempty"`
}

// idleTimes returns the probe times up to most, most included. Each step
// is probed a tenth past it: timeouts are most often set to round figures,
// and a probe that wakes just as its connection is closed cannot tell
// whether it was closed while idle (and when) or for its echo.
func idleTimes(most time.Duration) []time.Duration {
	var ts []time.Duration
	for _, t := range idleSteps {
		if t = t * 11 / 10; t < most {
			ts = append(ts, t)
		}
	}
	return append(ts, most)
}

// idleGrace is how long a probe waits after its idle time for a close that
// may be on its way before it sends its echo.
const idleGrace = 100 * time.Millisecond

// prober leaves one connection (or flow) idle for idle and reports what
// became of it.
type prober func(ctx context.Context, idle time.Duration) IdleProbe

// probeIdle runs prober for every idle time at once, and cancels the
// longer probes once one fails: they would fail too.
func probeIdle(ctx context.Context, times []time.Duration, probe prober) *Idle {
	res := &Idle{Probes: make([]IdleProbe, len(times))}
	cancels := make([]context.CancelFunc, len(times))
	ctxs := make([]context.Context, len(times))
	for i := range times {
		ctxs[i], cancels[i] = context.WithCancel(ctx)
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, t := range times {
		wg.Go(func() {
			p := probe(ctxs[i], t)
			if p.Outcome == "" {
				p.Outcome = "echoed"
			}
			if ctxs[i].Err() != nil && ctx.Err() == nil && p.Outcome != "echoed" && p.Outcome != "closed" {
				p = IdleProbe{Outcome: "cancelled"}
			}
			p.Idle = t
			mu.Lock()
			defer mu.Unlock()
			res.Probes[i] = p
			if p.Outcome == "closed" || p.Outcome == "dead" {
				for j := i + 1; j < len(times); j++ {
					cancels[j]()
				}
			}
		})
	}
	wg.Wait()
	for _, p := range res.Probes {
		switch p.Outcome {
		case "echoed":
			res.Survived = max(res.Survived, p.Idle)
		case "closed":
			if res.ClosedAfter == 0 || p.ClosedAfter < res.ClosedAfter {
				res.ClosedAfter = p.ClosedAfter
			}
		case "dead":
			if res.DiedBy == 0 || p.Idle < res.DiedBy {
				res.DiedBy = p.Idle
			}
		case "error":
			if res.Err == "" {
				res.Err = p.Err
			}
		}
	}
	if res.ClosedAfter > 0 && (res.DiedBy == 0 || res.ClosedAfter < res.DiedBy) {
		res.DiedBy = res.ClosedAfter
	}
	return res
}

// probeStream is the prober for TCP, TLS and WebSocket: one echo, then
// quiet for idle while a read waits for the close that may come, then
// another echo.
func probeStream(d dialer, patience time.Duration) prober {
	return func(ctx context.Context, idle time.Duration) IdleProbe {
		s, err := d.dial(ctx)
		if err != nil {
			return IdleProbe{Outcome: "error", Err: err.Error()}
		}
		defer s.Close()
		msg := []byte("idle probe: are you still there?")
		got := make([]byte, len(msg))
		s.SetDeadline(time.Now().Add(patience))
		if _, err := s.Write(msg); err != nil {
			return IdleProbe{Outcome: "error", Err: err.Error()}
		}
		if _, err := io.ReadFull(s, got); err != nil {
			return IdleProbe{Outcome: "error", Err: "first echo: " + readErr(err, patience).Error()}
		}
		quiet := time.Now()
		s.SetDeadline(time.Time{})
		read := make(chan error, 1)
		go func() {
			_, err := io.ReadFull(s, got)
			read <- err
		}()
		t := time.NewTimer(idle)
		defer t.Stop()
		select {
		case err := <-read:
			// Nothing was sent: whatever ended the read closed the
			// connection on its own.
			if err == nil {
				return IdleProbe{Outcome: "error", Err: "bytes came while nothing was sent"}
			}
			if ctx.Err() != nil {
				return IdleProbe{Outcome: "cancelled"}
			}
			return IdleProbe{Outcome: "closed", ClosedAfter: time.Since(quiet)}
		case <-ctx.Done():
			s.Close()
			<-read
			return IdleProbe{Outcome: "cancelled"}
		case <-t.C:
		}
		// A close that was on its way as the timer fired (a timeout set to
		// exactly this idle time) is the close, not an answer to the echo
		// that follows: wait a moment for it before sending.
		grace := time.NewTimer(idleGrace)
		defer grace.Stop()
		select {
		case err := <-read:
			if err == nil {
				return IdleProbe{Outcome: "error", Err: "bytes came while nothing was sent"}
			}
			return IdleProbe{Outcome: "closed", ClosedAfter: time.Since(quiet)}
		case <-grace.C:
		}
		s.SetDeadline(time.Now().Add(patience))
		if _, err := s.Write(msg); err != nil {
			<-read
			return IdleProbe{Outcome: "dead", Err: "write: " + err.Error()}
		}
		if err := <-read; err != nil {
			return IdleProbe{Outcome: "dead", Err: readErr(err, patience).Error()}
		}
		return IdleProbe{Outcome: "echoed"}
	}
}

// isTimeout reports whether err is a deadline passing.
func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}
