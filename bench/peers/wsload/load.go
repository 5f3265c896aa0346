package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// dialers is how many connections are opened at once: enough to open
// thousands in a second or two, few enough that a server's limit on
// upgrades in flight from one address (echod's is 256) is not met.
const dialers = 32

// tally counts what went wrong, keeping the first of each kind.
type tally struct {
	mu                        sync.Mutex
	mismatches, errors        int64
	firstMismatch, firstError string
}

// add counts err, unless ctx has ended: then the error is only the
// interruption.
func (t *tally) add(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var m *mismatch
	if errors.As(err, &m) {
		if t.mismatches++; t.firstMismatch == "" {
			t.firstMismatch = m.what
		}
		return
	}
	if t.errors++; t.firstError == "" {
		t.firstError = err.Error()
	}
}

func (t *tally) fill(r *result) {
	r.Mismatches, r.Errors = t.mismatches, t.errors
	r.FirstMismatch, r.FirstError = t.firstMismatch, t.firstError
}

// session is one open WebSocket of a run.
type session struct {
	*wsConn
	msg  []byte      // the message sent, a pattern of its own with a sequence number
	seq  uint64      // how many messages it has sent
	stop func() bool // unties the connection from the run's context
}

// dial opens connection i and completes its upgrade; every read and write
// on it fails once ctx ends.
func dial(ctx context.Context, cfg *config, i int) (*session, error) {
	d := net.Dialer{Timeout: cfg.timeout}
	if len(cfg.sources) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: cfg.sources[i%len(cfg.sources)].AsSlice()}
	}
	c, err := d.DialContext(ctx, "tcp", cfg.url.Host)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.url.Host, err)
	}
	c.SetDeadline(time.Now().Add(cfg.timeout))
	ws, err := handshake(c, cfg.url)
	if err != nil {
		c.Close()
		return nil, err
	}
	s := &session{wsConn: ws, msg: make([]byte, cfg.size)}
	s.stop = context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	// Each connection its own bytes, so that an echo sent to the wrong
	// connection is caught too.
	rng := mrand.NewPCG(uint64(i), 0x9e3779b97f4a7c15)
	for j := 0; j < len(s.msg); j += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		copy(s.msg[j:], w[:])
	}
	return s, nil
}

// exchange sends the next message, which differs from the last in its
// first bytes (a sequence number), so that a stale echo is caught.
func (s *session) exchange() error {
	s.seq++
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], s.seq)
	copy(s.msg, w[:])
	return s.wsConn.exchange(s.msg)
}

// close ends the connection with a reset rather than a close handshake:
// the server's side ends at once, and no TIME_WAIT is left behind to use
// up ports for the next run.
func (s *session) close() {
	s.stop()
	if tc, ok := s.c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	s.c.Close()
}

// giveUp is how many connections may fail to open before openAll stops
// trying: a server that refuses or ignores them would otherwise hold the
// run for a -timeout each.
const giveUp = 100

// openAll opens cfg.conns connections, dialers at a time, and runs first
// on each; the ones that fail are counted in t and left out. The first
// connection is opened alone: if it fails, no more are tried.
func openAll(ctx context.Context, cfg *config, t *tally, first func(*session) error) []*session {
	open := make([]*session, cfg.conns)
	var next, failed atomic.Int64
	try := func(i int) {
		s, err := dial(ctx, cfg, i)
		if err == nil {
			if err = first(s); err != nil {
				s.close()
			}
		}
		if err != nil {
			failed.Add(1)
			t.add(ctx, fmt.Errorf("connection %d: %w", i+1, err))
			return
		}
		open[i] = s
	}
	if try(0); open[0] == nil {
		return nil
	}
	next.Store(1)
	var wg sync.WaitGroup
	for range min(dialers, cfg.conns-1) {
		wg.Go(func() {
			for failed.Load() < giveUp {
				i := int(next.Add(1)) - 1
				if i >= cfg.conns || ctx.Err() != nil {
					return
				}
				try(i)
			}
		})
	}
	wg.Wait()
	kept := open[:0]
	for _, s := range open {
		if s != nil {
			kept = append(kept, s)
		}
	}
	return kept
}

func closeAll(open []*session) {
	for _, s := range open {
		s.close()
	}
}

// idle holds cfg.conns WebSockets after one echo each and measures how
// much the server's resident memory grew for them.
func idle(ctx context.Context, cfg *config) (*result, error) {
	res := &result{Mode: cfg.mode, URL: cfg.url.String(), Conns: cfg.conns, Size: cfg.size}
	before, err := rss(cfg.pid)
	if err != nil {
		return nil, err
	}
	var t tally
	open := openAll(ctx, cfg, &t, func(s *session) error {
		if err := s.exchange(); err != nil {
			return err
		}
		// Held with no deadline: the server decides how long.
		return s.c.SetDeadline(time.Time{})
	})
	defer closeAll(open)
	res.Open = len(open)
	if len(open) == 0 {
		t.fill(res)
		return res, nil
	}
	select {
	case <-ctx.Done():
	case <-time.After(cfg.settle):
	}
	after, err := rss(cfg.pid)
	if err != nil {
		return nil, err
	}
	res.RSSBefore, res.RSSAfter = before, after
	if len(open) > 0 {
		res.RSSPerConn = float64(after-before) / float64(len(open))
	}
	// A server that dropped idle connections would look small: each must
	// still echo after the hold.
	var wg sync.WaitGroup
	work := make(chan *session)
	for range min(dialers, len(open)) {
		wg.Go(func() {
			for s := range work {
				s.c.SetDeadline(time.Now().Add(cfg.timeout))
				if err := s.exchange(); err != nil {
					t.add(ctx, fmt.Errorf("after the hold: %w", err))
				}
			}
		})
	}
	for _, s := range open {
		work <- s
	}
	close(work)
	wg.Wait()
	t.fill(res)
	return res, nil
}

// pingpong has cfg.conns connections each send a message and wait for its
// echo, over and over, and counts the round trips completed in the
// measured window.
func pingpong(ctx context.Context, cfg *config) (*result, error) {
	res := &result{Mode: cfg.mode, URL: cfg.url.String(), Conns: cfg.conns, Size: cfg.size}
	if cfg.pid > 0 {
		if _, err := cpuTime(cfg.pid); err != nil {
			return nil, err
		}
	}
	var t tally
	end := time.Now().Add(cfg.timeout + cfg.warmup + cfg.dur + cfg.timeout)
	open := openAll(ctx, cfg, &t, func(s *session) error {
		// One deadline for the whole run: no echo waits past it.
		return s.c.SetDeadline(end)
	})
	defer closeAll(open)
	if len(open) == 0 {
		t.fill(res)
		return res, nil
	}
	const (
		warming = iota
		measuring
		stopped
	)
	var phase atomic.Int32
	counts := make([]int64, len(open))
	var wg sync.WaitGroup
	for i, s := range open {
		wg.Go(func() {
			for phase.Load() != stopped {
				if err := s.exchange(); err != nil {
					t.add(ctx, err)
					return
				}
				if phase.Load() == measuring {
					counts[i]++
				}
			}
		})
	}
	wait := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	wait(cfg.warmup)
	// The server's CPU time is read as the window opens and closes; a
	// server gone by then is an error of the run, not the end of it.
	var cpu0, cpu1 time.Duration
	var cpuErr error
	if cfg.pid > 0 {
		cpu0, cpuErr = cpuTime(cfg.pid)
	}
	start := time.Now()
	phase.Store(measuring)
	wait(cfg.dur)
	phase.Store(stopped)
	res.Seconds = time.Since(start).Seconds()
	if cfg.pid > 0 && cpuErr == nil {
		cpu1, cpuErr = cpuTime(cfg.pid)
	}
	wg.Wait()
	for _, n := range counts {
		res.RoundTrips += n
	}
	res.RoundTripsPerSec = float64(res.RoundTrips) / res.Seconds
	if cpuErr != nil {
		t.add(ctx, cpuErr)
	} else if cfg.pid > 0 && res.RoundTrips > 0 {
		res.ServerCPUPerRoundTripNs = float64(cpu1-cpu0) / float64(res.RoundTrips)
	}
	t.fill(res)
	return res, nil
}
