// Package bandwidth holds echo to budgets of bytes per second, per
// connection and per client address, and to a total egress budget per
// period, so that a public echo server cannot run up its owner's bill. Its
// core does no I/O and never sleeps: a Flow answers how many bytes to read
// and how long to wait before sending them, and the engines pause for that
// long, reading nothing, so that a client meets TCP backpressure and
// nothing is lost. Conn does the same for servers that write through a
// net.Conn (net/http): its Write waits.
package bandwidth

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync/atomic"
	"time"
)

// The budgets count what the network carries, which is what a cloud bills:
// the payload, and for each packet of up to PacketPayload bytes an
// estimated PacketOverhead bytes of headers (IPv6 and TCP with timestamps
// take 72, IPv4 52, UDP 28 to 48). Without it, a client echoing one byte
// per packet would send some 50 times its budget.
const (
	PacketPayload  = 1448
	PacketOverhead = 64
)

// Wire returns what n bytes of payload cost, headers included: n and
// PacketOverhead per packet of up to PacketPayload bytes.
func Wire(n int) int {
	if n <= 0 {
		return 0
	}
	return n + PacketOverhead*(1+(n-1)/PacketPayload)
}

// Config is what a Limiter limits. Zero fields limit nothing.
type Config struct {
	// PerConn is the most each connection is sent, in bytes per second.
	PerConn Rate
	// PerAddr is the most one client address (for IPv6, one /64) is
	// sent, over all its connections, WebSockets, requests and datagrams.
	PerAddr Rate
	// Egress is the most sent in all per period; see Stage for what
	// happens as it runs out. The first period starts with New, and a
	// restart starts a new one.
	Egress Budget
	// MaxAddrs bounds how many addresses' buckets are kept at once; zero
	// means DefaultMaxAddrs.
	MaxAddrs int
	// Logger receives, from Run, a line when the egress budget's stage
	// changes. Nil discards.
	Logger *slog.Logger
}

// DefaultMaxAddrs is how many addresses a Limiter keeps buckets for at
// most (about 64 bytes each): more than a server has clients at once; a
// flood of forged addresses beyond it shares buckets.
const DefaultMaxAddrs = 1 << 16

// Limiter is one set of budgets, shared by every transport a server
// serves, so that one address's TCP, TLS and WebSocket connections, HTTP
// requests and UDP datagrams all draw on the same bucket. Its methods are
// safe for concurrent use. A nil *Limiter limits nothing, at no cost.
type Limiter struct {
	cfg     Config
	epoch   time.Time // the clock's zero; times are nanoseconds since
	perConn *pace     // nil: no limit
	perAddr *pace     // nil: no limit
	addrs   *addresses
	egress  *egress // nil: no budget

	throttled atomic.Int64 // nanoseconds of waits asked for
}

// New returns a Limiter for cfg, or nil if cfg limits nothing. now starts
// its clock and the first period of the egress budget.
func New(now time.Time, cfg Config) (*Limiter, error) {
	if cfg.PerConn < 0 || cfg.PerAddr < 0 || cfg.Egress.Bytes < 0 {
		return nil, fmt.Errorf("negative bandwidth limit")
	}
	if cfg.Egress.Bytes > 0 && (cfg.Egress.Period < MinPeriod || cfg.Egress.Period > MaxPeriod) {
		return nil, fmt.Errorf("egress budget period %v out of range: want %v to %v", cfg.Egress.Period, MinPeriod, MaxPeriod)
	}
	if cfg.PerConn == 0 && cfg.PerAddr == 0 && cfg.Egress.Bytes == 0 {
		return nil, nil
	}
	if cfg.MaxAddrs <= 0 {
		cfg.MaxAddrs = DefaultMaxAddrs
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{cfg: cfg, epoch: now}
	if cfg.PerConn > 0 {
		p := newPace(cfg.PerConn)
		l.perConn = &p
	}
	if cfg.PerAddr > 0 {
		p := newPace(cfg.PerAddr)
		l.perAddr = &p
		l.addrs = newAddresses(cfg.MaxAddrs)
	}
	if cfg.Egress.Bytes > 0 {
		l.egress = newEgress(cfg.Egress, cfg.Logger, now)
	}
	return l, nil
}

// Run logs the egress budget's changes of stage as they happen, until ctx
// ends: the connections that cause them never write a log line themselves
// (an event loop must not block on one). Without Run they are not logged;
// /metrics shows them all the same.
func (l *Limiter) Run(ctx context.Context) {
	if l == nil || l.egress == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.egress.changed:
			l.egress.logChanges()
		}
	}
}

// Config returns what l limits; the zero Config for a nil l.
func (l *Limiter) Config() Config {
	if l == nil {
		return Config{}
	}
	return l.cfg
}

// clock is now on l's clock.
func (l *Limiter) clock(now time.Time) int64 { return int64(now.Sub(l.epoch)) }

// BudgetSpentError is what Admit returns once the egress budget is spent:
// it names the budget and when it renews.
type BudgetSpentError struct {
	Budget Budget
	Renews time.Time // when the next period starts
}

// Error says the budget is spent, and until when new sessions are refused.
func (e *BudgetSpentError) Error() string {
	return fmt.Sprintf("egress budget of %s spent: new sessions refused until %s", e.Budget, e.Renews.UTC().Format(time.RFC3339))
}

// Admit reports whether a new session (a connection, a WebSocket, an HTTP
// request) may start at now: nil, unless the egress budget is spent.
func (l *Limiter) Admit(now time.Time) error {
	if !l.Spent(now) {
		return nil
	}
	return &BudgetSpentError{Budget: l.cfg.Egress, Renews: l.epoch.Add(time.Duration(l.egress.end.Load()))}
}

// Spent reports whether the egress budget is spent at now; see Admit.
func (l *Limiter) Spent(now time.Time) bool {
	return l != nil && l.egress != nil && l.egress.current(l.clock(now)) == StageSpent
}

// Datagram reports whether a reply of n bytes to addr may be sent at now,
// and if so counts it. A datagram is sent at once or dropped, never held:
// holding would take memory per datagram and stall every other source
// behind it on the shared socket, and UDP promises nothing anyway.
func (l *Limiter) Datagram(now time.Time, addr netip.Addr, n int) bool {
	if l == nil {
		return true
	}
	t, n := l.clock(now), Wire(n)
	if l.perAddr != nil && addr.IsValid() && !l.addrs.trySpend(Key(addr), t, n, l.perAddr) {
		return false
	}
	return l.egress == nil || l.egress.trySpend(t, n)
}

// Flow is one connection's share of a Limiter: its own bucket, and its
// address's. A Flow is used by one goroutine at a time (the connection's,
// or its event loop); a nil *Flow limits nothing.
type Flow struct {
	l      *Limiter
	own    bucket
	key    netip.Addr
	addr   *addrBucket // nil: no per-address limit
	closed atomic.Bool
}

// Open returns the Flow of a new connection from addr (the zero Addr for a
// peer that is not IP, which only the per-connection and total limits
// hold), or nil if l is nil. Close it when the connection ends.
func (l *Limiter) Open(now time.Time, addr netip.Addr) *Flow {
	if l == nil {
		return nil
	}
	f := &Flow{l: l}
	if l.perAddr != nil && addr.IsValid() {
		f.key = Key(addr)
		f.addr = l.addrs.hold(f.key, l.clock(now))
	}
	return f
}

// Close gives back the Flow's hold on its address's bucket. It may be
// called more than once, and while another goroutine spends.
func (f *Flow) Close() {
	if f == nil || f.addr == nil || f.closed.Swap(true) {
		return
	}
	f.l.addrs.release(f.key, f.addr)
}

// MinRead is the least Allow returns: what a connection in debt reads to
// take its turn. Reading and then waiting in Spend, rather than waiting to
// read, is what queues an address's connections fairly: each charges what
// it read and waits behind the others' charges, where waiting for credit
// would leave it to whichever connection looked first.
const MinRead = 4 << 10

// Allow returns how many bytes f should read next: what may be sent at now
// without waiting (headers included, see Wire), or MinRead when that is
// less. It spends nothing.
func (f *Flow) Allow(now time.Time) int {
	n := math.MaxInt32
	if f == nil {
		return n
	}
	t := f.l.clock(now)
	if f.l.perConn != nil {
		n = min(n, f.own.allow(t, f.l.perConn))
	}
	if f.addr != nil {
		n = min(n, f.addr.allow(t, f.l.perAddr))
	}
	if f.l.egress != nil {
		if m := f.l.egress.allow(t); m >= 0 {
			n = min(n, m)
		}
	}
	return max(n, MinRead)
}

// Spend counts n bytes of payload that f is about to send in one write (so
// at Wire(n)) and returns how long it must wait before sending them: zero
// while within every budget. The caller waits, then sends, and reads
// nothing more meanwhile: that is the backpressure.
func (f *Flow) Spend(now time.Time, n int) time.Duration {
	if f == nil {
		return 0
	}
	t, n := f.l.clock(now), Wire(n)
	var wait int64
	if f.l.perConn != nil {
		wait = f.own.spend(t, n, f.l.perConn)
	}
	if f.addr != nil {
		wait = max(wait, f.addr.spend(t, n, f.l.perAddr))
	}
	if f.l.egress != nil {
		wait = max(wait, f.l.egress.spend(t, n))
	}
	if wait > 0 {
		f.l.throttled.Add(wait)
	}
	return time.Duration(wait)
}

// Stats is a snapshot of a Limiter, for metrics.
type Stats struct {
	// Addresses is how many addresses' buckets are kept now.
	Addresses int
	// Throttled is the total of the waits Spend asked for: how much echo
	// was slowed down, summed over connections.
	Throttled time.Duration
	// Budget is the egress budget; the fields below are zero without one.
	Budget Budget
	// Used is what was sent in the current period, Renews when the next
	// one starts, and Stage how far into the budget the period is.
	Used   int64
	Renews time.Time
	Stage  Stage
}

// Stats returns a snapshot of l's state at now.
func (l *Limiter) Stats(now time.Time) Stats {
	if l == nil {
		return Stats{}
	}
	s := Stats{Throttled: time.Duration(l.throttled.Load())}
	if l.addrs != nil {
		s.Addresses = l.addrs.count()
	}
	if e := l.egress; e != nil {
		s.Stage = e.current(l.clock(now))
		s.Budget = e.budget
		s.Used = e.used.Load()
		s.Renews = l.epoch.Add(time.Duration(e.end.Load()))
	}
	return s
}
