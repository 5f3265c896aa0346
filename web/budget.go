package web

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// budget bounds the memory the request echoes hold, charged as it is
// taken: the body as it arrives, and the request's headers, held until
// its echo is written. There are three bounds, each a share of the one
// above: all requests, the requests of one client address (IPv6: its /64),
// and the requests of one connection (its HTTP/2 streams). So no address
// or connection can take the whole budget, and one that stalls holds only
// what it has sent.
//
// A body does not wait for memory that others hold: when its next piece
// does not fit, the body is cut there and the echo says so. Except that
// every upload that holds memory and has sent nothing for stallGrace
// first gives it back, dropping what it sent and answered 408 (see
// errStalled), and the body waits a moment for that. Headers wait, but only behind
// the requests of their own connection or address, or behind other
// headers: bodies may fill the whole budget only up to headroom below it.
// So a request without a body is never held up by bodies.
type budget struct {
	total, perAddr, perConn int64
	headroom                int64         // of total, that bodies may not take
	maxRequests             int           // in flight per address
	stallGrace              time.Duration // an upload quiet this long gives way

	mu    sync.Mutex
	used  int64
	addrs map[netip.Prefix]*share
	conns map[string]*share
	freed chan struct{} // closed and replaced when memory is given back
	// uploads are the accounts reading a body into memory now.
	uploads map[*account]struct{}
}

// share is what one address or connection holds.
type share struct {
	used     int64
	requests int
}

// errNoRoom cuts a body that the budget has no room for.
var errNoRoom = errors.New("no room in the request echo's memory budget")

// errStalled ends the read of a body that stalled while another needed
// the memory it held.
var errStalled = errors.New("the body stopped coming while others needed the memory it held")

// account is one request's part of the budget.
type account struct {
	b    *budget
	addr netip.Prefix
	conn string
	held int64

	// While its body is read: interrupt ends the read at once, and
	// heard is when the last bytes came (unix nanoseconds).
	interrupt   func()
	heard       atomic.Int64
	interrupted atomic.Bool
}

// addrKey is the share an address counts against: the address itself, or
// for IPv6 its /64, which one client usually has whole. An address net/http
// cannot parse (not IP) shares with every other such one.
func addrKey(remote string) netip.Prefix {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.WithZone("").Prefix(64)
	return p
}

// open starts the account of a request from remote, the connection's
// address: false when its address has maxRequests in flight already.
func (b *budget) open(remote string) (*account, bool) {
	a := &account{b: b, addr: addrKey(remote), conn: remote}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addrs == nil {
		b.addrs = make(map[netip.Prefix]*share)
		b.conns = make(map[string]*share)
	}
	as := b.addrs[a.addr]
	if as == nil {
		as = &share{}
		b.addrs[a.addr] = as
	}
	if b.maxRequests > 0 && as.requests >= b.maxRequests {
		b.forgetLocked(a)
		return nil, false
	}
	cs := b.conns[a.conn]
	if cs == nil {
		cs = &share{}
		b.conns[a.conn] = cs
	}
	as.requests++
	cs.requests++
	return a, true
}

// fitsLocked reports whether n more bytes fit a share that holds used of
// most. One that holds nothing always takes its first piece, so that a
// request larger than a share is not stuck forever.
func fitsLocked(used, n, most int64) bool {
	return used == 0 || used+n <= most
}

// startUpload marks a as reading a body, which interrupt ends; endUpload
// marks the end.
func (a *account) startUpload(interrupt func()) {
	a.interrupt = interrupt
	a.heard.Store(time.Now().UnixNano())
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	if a.b.uploads == nil {
		a.b.uploads = make(map[*account]struct{})
	}
	a.b.uploads[a] = struct{}{}
}

func (a *account) endUpload() {
	a.b.mu.Lock()
	defer a.b.mu.Unlock()
	delete(a.b.uploads, a)
}

// reclaimWait is how long a body waits for the memory of stalled uploads
// it interrupted.
const reclaimWait = time.Second

// reclaimLocked interrupts the uploads other than asker that hold memory
// and have sent nothing for stallGrace, so that they give it back, and
// returns how many.
func (b *budget) reclaimLocked(asker *account) int {
	n := 0
	quiet := time.Now().Add(-b.stallGrace).UnixNano()
	for u := range b.uploads {
		if u != asker && u.held > 0 && u.heard.Load() <= quiet && u.interrupted.CompareAndSwap(false, true) {
			u.interrupt()
			delete(b.uploads, u)
			n++
		}
	}
	return n
}

// take charges n bytes, at once or never for a body (errNoRoom), waiting
// until ctx ends for headers.
func (a *account) take(ctx context.Context, n int64, body bool) error {
	b := a.b
	limit := b.total
	if body {
		limit -= b.headroom
	}
	var reclaiming <-chan time.Time // set once stalled uploads are giving way
	for {
		b.mu.Lock()
		as, cs := b.addrs[a.addr], b.conns[a.conn]
		if fitsLocked(cs.used, n, b.perConn) && fitsLocked(as.used, n, b.perAddr) && fitsLocked(b.used, n, limit) {
			cs.used += n
			as.used += n
			b.used += n
			a.held += n
			b.mu.Unlock()
			return nil
		}
		if body && reclaiming == nil {
			if b.reclaimLocked(a) == 0 {
				b.mu.Unlock()
				return errNoRoom
			}
			// They give their memory back at once: a moment's wait.
			t := time.NewTimer(reclaimWait)
			defer t.Stop()
			reclaiming = t.C
		}
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-reclaiming:
			return errNoRoom
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// give gives n bytes back.
func (a *account) give(n int64) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	a.giveLocked(n)
}

func (a *account) giveLocked(n int64) {
	b := a.b
	if n <= 0 {
		return
	}
	b.addrs[a.addr].used -= n
	b.conns[a.conn].used -= n
	b.used -= n
	a.held -= n
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
}

// close gives back everything the request holds and ends its account.
func (a *account) close() {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	a.giveLocked(a.held)
	b.addrs[a.addr].requests--
	b.conns[a.conn].requests--
	b.forgetLocked(a)
}

// forgetLocked drops the shares of a's address and connection once
// nothing uses them.
func (b *budget) forgetLocked(a *account) {
	if s := b.addrs[a.addr]; s != nil && s.requests == 0 && s.used == 0 {
		delete(b.addrs, a.addr)
	}
	if s := b.conns[a.conn]; s != nil && s.requests == 0 && s.used == 0 {
		delete(b.conns, a.conn)
	}
}

// usage returns the bytes held in all, and by the busiest address.
func (b *budget) usage() (total, mostByAddr int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.addrs {
		mostByAddr = max(mostByAddr, s.used)
	}
	return b.used, mostByAddr
}
