// Package netsim is a small in-process proxy that behaves like a network
// path: it adds delay with jitter, caps bandwidth, cuts writes into small
// segments, turns a half-close into a full close, closes idle connections
// and can tamper with one byte. Tests put it between a client and an echo
// server on loopback to reproduce what a tunnel, a load balancer or a slow
// uplink does to a connection.
package netsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Path is what a proxy does to the traffic it forwards. Its zero value
// forwards bytes unchanged and as fast as it can.
type Path struct {
	// Delay is added to each direction, so a round trip takes 2*Delay more.
	// A TCP direction holds at most 4 MiB in flight, which caps it at
	// about 4 MiB a second for each second of Delay.
	Delay time.Duration
	// Jitter varies each chunk's delay uniformly within ±Jitter. Bytes keep
	// their order: a chunk never overtakes the one read before it.
	Jitter time.Duration
	// Rate caps each direction at this many bytes a second, shared by all
	// the proxy's connections as a link's bandwidth is; 0 is no cap.
	Rate int64
	// Segment cuts every write into writes of at most this many bytes (536,
	// say, the smallest TCP MSS); 0 leaves writes whole. For UDP it is the
	// largest datagram that gets through: larger ones are dropped.
	Segment int
	// CloseOnHalfClose closes both sides of a TCP connection when either
	// side half-closes, once the bytes sent before it have been delivered,
	// as toxiproxy and some tunnels do. Bytes still on their way back are
	// lost.
	CloseOnHalfClose bool
	// IdleTimeout closes a TCP connection when no byte has gone either way
	// for this long, and forgets a UDP flow (its next datagram starts a new
	// one, from a new port), as NATs and load balancers do; 0 is never.
	IdleTimeout time.Duration
	// Tamper changes one byte of what the target sends back.
	Tamper Tamper
}

// Tamper names one byte of the stream from the target back to the client
// (offset At, counted from 0 on each TCP connection, or the byte at At in
// each UDP datagram that long) and what happens to it.
type Tamper struct {
	Kind TamperKind
	At   int64
}

// TamperKind is what Tamper does to its byte.
type TamperKind int

// The kinds of tampering.
const (
	// NoTamper leaves every byte alone.
	NoTamper TamperKind = iota
	// Flip inverts every bit of the byte.
	Flip
	// Drop removes the byte.
	Drop
	// Duplicate sends the byte twice.
	Duplicate
)

// String names k as a person would.
func (k TamperKind) String() string {
	switch k {
	case NoTamper:
		return "none"
	case Flip:
		return "flip"
	case Drop:
		return "drop"
	case Duplicate:
		return "duplicate"
	}
	return fmt.Sprintf("TamperKind(%d)", int(k))
}

// Proxy forwards connections from its own loopback address to a target
// through a Path.
type Proxy struct {
	path   Path
	target string
	ln     net.Listener   // nil for UDP
	pc     net.PacketConn // nil for TCP
	ctx    context.Context
	cancel context.CancelFunc
	stop   func() bool // unregisters the context.AfterFunc

	// up and down pace the two directions: client to target, and back.
	up, down pacer

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[*conn]struct{}
	flows map[string]*flow
	once  sync.Once
}

// Start listens for TCP on 127.0.0.1:0 and forwards each connection to
// target (HOST:PORT) through path, until ctx ends or Close is called.
// Call Close either way: it waits for the proxy's goroutines.
func Start(ctx context.Context, target string, path Path) (*Proxy, error) {
	if err := path.validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netsim: listen: %w", err)
	}
	p := newProxy(ctx, target, path)
	p.ln = ln
	p.wg.Go(p.accept)
	return p, nil
}

func newProxy(ctx context.Context, target string, path Path) *Proxy {
	p := &Proxy{path: path, target: target, conns: map[*conn]struct{}{}, flows: map[string]*flow{},
		up: pacer{rate: path.Rate}, down: pacer{rate: path.Rate}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.stop = context.AfterFunc(ctx, p.shutdown)
	return p
}

func (path Path) validate() error {
	switch {
	case path.Delay < 0 || path.Jitter < 0 || path.IdleTimeout < 0:
		return errors.New("netsim: negative duration in Path")
	case path.Rate < 0:
		return errors.New("netsim: negative Rate in Path")
	case path.Segment < 0:
		return errors.New("netsim: negative Segment in Path")
	case path.Tamper.Kind < NoTamper || path.Tamper.Kind > Duplicate:
		return fmt.Errorf("netsim: unknown %v", path.Tamper.Kind)
	case path.Tamper.At < 0:
		return errors.New("netsim: negative Tamper.At in Path")
	}
	return nil
}

// Addr is the proxy's own address, HOST:PORT on 127.0.0.1, for clients to
// connect (or send) to.
func (p *Proxy) Addr() string {
	if p.ln != nil {
		return p.ln.Addr().String()
	}
	return p.pc.LocalAddr().String()
}

// Close stops the proxy: it closes its listener and every connection it
// forwards, and returns once all its goroutines have.
func (p *Proxy) Close() error {
	p.stop()
	p.shutdown()
	p.wg.Wait()
	return nil
}

func (p *Proxy) shutdown() {
	p.once.Do(func() {
		p.cancel()
		if p.ln != nil {
			p.ln.Close()
		}
		if p.pc != nil {
			p.pc.Close()
		}
		p.mu.Lock()
		for c := range p.conns {
			c.closeBoth()
		}
		flows := make([]*flow, 0, len(p.flows))
		for _, f := range p.flows {
			flows = append(flows, f)
		}
		p.mu.Unlock()
		for _, f := range flows {
			p.end(f) // takes p.mu
		}
	})
}

// delay is how long the chunk read now waits before it goes on, given the
// time the chunk before it goes on (last), so that order is kept.
func (path Path) release(now, last time.Time) time.Time {
	d := path.Delay
	if path.Jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*path.Jitter)+1)) - path.Jitter
	}
	at := now.Add(max(d, 0))
	if at.Before(last) {
		at = last
	}
	return at
}

// pacer spaces out writes so that a direction carries at most rate bytes a
// second over any stretch longer than a few milliseconds, however many
// connections share it.
type pacer struct {
	rate int64
	mu   sync.Mutex
	next time.Time // when the bytes written so far have been paid for
}

// burst is the most time an idle direction banks.
const burst = 5 * time.Millisecond

// wait blocks until n more bytes may go, or done closes (false).
func (pc *pacer) wait(n int, t *time.Timer, done <-chan struct{}) bool {
	if pc.rate <= 0 {
		return true
	}
	pc.mu.Lock()
	now := time.Now()
	// Time the direction stood idle banks no more than a short burst, as
	// a link's queue drains while nothing arrives; but a writer that is
	// briefly late (a syscall, a scheduler tick) keeps its due.
	if early := now.Add(-burst); pc.next.Before(early) {
		pc.next = early
	}
	pc.next = pc.next.Add(time.Duration(int64(n) * int64(time.Second) / pc.rate))
	until := pc.next
	pc.mu.Unlock()
	// Sleeping for every small segment would lose the timer's slack each
	// time; pay a couple of milliseconds ahead instead.
	if d := time.Until(until); d > 2*time.Millisecond {
		return sleep(t, d, done)
	}
	return true
}

// sleep waits for d on t, or for done to close (false).
func sleep(t *time.Timer, d time.Duration, done <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t.Reset(d)
	select {
	case <-t.C:
		return true
	case <-done:
		t.Stop()
		return false
	}
}

// tamperer applies a Tamper to a stream as it passes, keeping the offset.
type tamperer struct {
	Tamper
	off int64
}

// apply returns p as it should go on, with the tampered byte changed,
// removed or doubled when it falls in p. It may change p in place.
func (tp *tamperer) apply(p []byte) []byte {
	start := tp.off
	tp.off += int64(len(p))
	if tp.Kind == NoTamper || tp.At < start || tp.At >= tp.off {
		return p
	}
	i := tp.At - start
	switch tp.Kind {
	case Flip:
		p[i] ^= 0xff
	case Drop:
		p = append(p[:i:i], p[i+1:]...)
	case Duplicate:
		p = append(p[:i+1:i+1], p[i:]...)
	}
	return p
}
