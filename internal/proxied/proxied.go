// Package proxied accepts connections that arrive through a proxy or load
// balancer speaking the PROXY protocol (v1 or v2), so that a server sees, logs
// and limits each client by its own address rather than the proxy's. It
// reads the header before a connection is handed over, and rejects, counts
// and logs connections without a valid one or from peers not trusted to send
// one.
package proxied

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Reasons a connection is rejected, as counted in Stats and logged.
const (
	// ReasonHeader: no valid PROXY header arrived within the header timeout.
	ReasonHeader = "proxy-header"
	// ReasonUntrusted: the peer is not in Config.Trusted.
	ReasonUntrusted = "proxy-untrusted"
	// ReasonPending: the peer's address (IPv6: its /64) already had
	// Config.PendingPerIP connections waiting for their header.
	ReasonPending = "proxy-pending-per-ip"
)

// Config configures a Listener. The zero value trusts every peer.
type Config struct {
	// Trusted lists the networks allowed to send a PROXY header; a
	// connection from anywhere else is closed at once. Empty trusts every
	// peer, which is right only when nothing but the proxy can reach the
	// listener.
	Trusted []netip.Prefix
	// HeaderTimeout is how long a connection may take to send its header,
	// in as many pieces as it likes (default 5s).
	HeaderTimeout time.Duration
	// MaxPending is how many connections may be reading their header at
	// once (default 1024); beyond it, accepting waits.
	MaxPending int
	// PendingPerIP is how many of them may come from one address (IPv6:
	// one /64) at once (default 64); beyond it, new ones from that address
	// are reset, so that one silent source cannot hold every pending place
	// and stall the clients behind it. Peers named in Trusted are exempt.
	PendingPerIP int
	// Reserve, if set, is asked for a place for each connection from the
	// peer's address while its header is awaited, so that waiting
	// connections count against the server's connection limits; the
	// connection is reset if it gets none. A peer named in Trusted is
	// reserved for with the zero netip.Addr: under the server's total
	// only. The place is released when the
	// header has been read (the server then counts the connection under
	// the client's address) or the connection is rejected. echo.Server's
	// Reserve fits.
	Reserve func(netip.Addr) (release func(), ok bool)
	// Logger receives a warning for rejected connections, at most one per
	// LogInterval. Nil discards them.
	Logger *slog.Logger
	// LogInterval spaces the rejection warnings (default 10s); Stats counts
	// every rejection.
	LogInterval time.Duration
}

// Stats counts the connections a Listener has rejected.
type Stats struct {
	Header    uint64 // ReasonHeader: missing, invalid or late PROXY header
	Untrusted uint64 // ReasonUntrusted: peer not allowed to send a header
	Pending   uint64 // ReasonPending: too many from the peer waiting already
}

// Listener wraps a TCP listener whose clients connect through a PROXY
// protocol proxy. Accept returns connections whose header has been read, so
// RemoteAddr is the client's address (the proxy's for a header with the
// LOCAL command, as health checks send, or naming no TCP client) and never
// blocks.
type Listener struct {
	inner   net.Listener
	cfg     Config
	ready   chan accepted
	done    chan struct{} // closed by Close
	pending chan struct{} // a token per connection reading its header
	wg      sync.WaitGroup

	mu       sync.Mutex
	inflight map[*waiting]struct{} // connections reading their header, to close on Close
	bySource map[netip.Addr]int    // connections reading their header, by source key

	closeOnce sync.Once
	closeErr  error

	header, untrusted, tooMany atomic.Uint64
	warn                       rate.Sometimes
}

type accepted struct {
	c   net.Conn
	err error
}

// NewListener starts accepting on inner. Close stops it and closes inner.
func NewListener(inner net.Listener, cfg Config) *Listener {
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 5 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1024
	}
	if cfg.PendingPerIP <= 0 {
		cfg.PendingPerIP = 64
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{
		inner:    inner,
		cfg:      cfg,
		ready:    make(chan accepted),
		done:     make(chan struct{}),
		pending:  make(chan struct{}, cfg.MaxPending),
		inflight: make(map[*waiting]struct{}),
		bySource: make(map[netip.Addr]int),
		warn:     rate.Sometimes{Interval: cfg.LogInterval},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Accept returns the next connection whose PROXY header was valid, or the
// error of the underlying listener.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.ready:
		return a.c, a.err
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.inner.Addr(), Err: net.ErrClosed}
	}
}

// Close closes the underlying listener and the connections still reading
// their header, and waits for the goroutines that read them.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.inner.Close()
		l.mu.Lock()
		for w := range l.inflight {
			w.c.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return l.closeErr
}

// Addr returns the underlying listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Stats returns how many connections the listener has rejected, by reason.
func (l *Listener) Stats() Stats {
	return Stats{Header: l.header.Load(), Untrusted: l.untrusted.Load(), Pending: l.tooMany.Load()}
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	for {
		select {
		case l.pending <- struct{}{}:
		case <-l.done:
			return
		}
		c, err := l.inner.Accept()
		if err != nil {
			<-l.pending
			// The server's accept loop decides what to do with errors:
			// back off on temporary ones, stop on the rest.
			select {
			case l.ready <- accepted{err: err}:
			case <-l.done:
				return
			}
			continue
		}
		w := &waiting{c: c}
		if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			w.peer = ta.AddrPort().Addr().Unmap()
		}
		release, why := l.admit(w)
		if why != "" {
			<-l.pending
			l.reject(c, why, nil)
			continue
		}
		l.wg.Add(1)
		go l.readHeader(w, release)
	}
}

// admit registers raw, from peer, as reading its header, or returns why it
// may not: the peer is not trusted, it has too many waiting already, or the
// server's limits have no place for it ("limit": the server counts its own
// refusals).
//
// A peer named in Config.Trusted is a proxy, which sends its header with
// its first bytes, many connections at once: it is exempt from
// PendingPerIP, and Reserve counts it under the server's total only, not
// under the proxy's own address, which would soon exhaust a per-IP limit
// meant for the clients behind it. Any other peer (Trusted empty) may be a
// client flooding silent connections, and is counted like one.
//
// A peer that is not IP (a Unix socket from systemd) has no address to
// count by: it is local, and counted under the server's total only.
func (l *Listener) admit(w *waiting) (release func(), why string) {
	if !l.trusted(w.peer) {
		return nil, ReasonUntrusted
	}
	named := len(l.cfg.Trusted) > 0 || !w.peer.IsValid()
	key := sourceKey(w.peer)
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return nil, "closed"
	default:
	}
	if !named && l.bySource[key] >= l.cfg.PendingPerIP {
		return nil, ReasonPending
	}
	release = func() {}
	if l.cfg.Reserve != nil {
		as := w.peer
		if named {
			as = netip.Addr{}
		}
		var ok bool
		if release, ok = l.cfg.Reserve(as); !ok {
			return nil, "limit"
		}
	}
	l.bySource[key]++
	l.inflight[w] = struct{}{}
	return release, ""
}

// readHeader reads raw's PROXY header and hands the connection to Accept,
// or rejects it.
func (l *Listener) readHeader(w *waiting, release func()) {
	defer l.wg.Done()
	raw := w.c
	c, err := readHeader(raw, l.cfg.HeaderTimeout)
	l.mu.Lock()
	delete(l.inflight, w)
	key := sourceKey(w.peer)
	if l.bySource[key]--; l.bySource[key] <= 0 {
		delete(l.bySource, key)
	}
	l.mu.Unlock()
	release()
	<-l.pending
	select {
	case <-l.done:
		raw.Close()
		return
	default:
	}
	if err != nil {
		l.reject(raw, ReasonHeader, err)
		return
	}
	select {
	case l.ready <- accepted{c: c}:
	case <-l.done:
		raw.Close()
	}
}

// reject closes c, counts it under reason and logs it, at most once per
// LogInterval. Refusals by the server's own limits ("limit") are the
// server's to count; a close that Close caused ("closed") is no rejection.
func (l *Listener) reject(c net.Conn, reason string, err error) {
	if tc, ok := c.(*net.TCPConn); ok && (reason == ReasonPending || reason == "limit") {
		// A flood: a reset tells the client at once and leaves no
		// TIME_WAIT behind.
		tc.SetLinger(0)
	}
	c.Close()
	var count *atomic.Uint64
	switch reason {
	case ReasonHeader:
		count = &l.header
	case ReasonUntrusted:
		count, err = &l.untrusted, errors.New("peer not in -proxy-protocol-from")
	case ReasonPending:
		count, err = &l.tooMany, fmt.Errorf("%d connections from this address already waiting for their header", l.cfg.PendingPerIP)
	default:
		return
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("no complete PROXY header within %v", l.cfg.HeaderTimeout)
	}
	n := count.Add(1)
	l.warn.Do(func() {
		l.cfg.Logger.Warn("rejected connection", "reason", reason, "remote", c.RemoteAddr().String(),
			"err", err, "rejected_so_far", n, "log_interval", l.cfg.LogInterval)
	})
}

// waiting is a connection reading its header, tracked by pointer.
type waiting struct {
	c    net.Conn
	peer netip.Addr // the zero Addr for a peer that is not IP
}

// trusted reports whether peer may send a PROXY header.
func (l *Listener) trusted(peer netip.Addr) bool {
	if len(l.cfg.Trusted) == 0 {
		return true
	}
	for _, p := range l.cfg.Trusted {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// sourceKey is what PendingPerIP counts by: an IPv4 address, or the /64 of
// an IPv6 one, since one host commonly holds a whole /64.
func sourceKey(a netip.Addr) netip.Addr {
	if !a.Is6() {
		return a
	}
	p, _ := a.Prefix(64)
	return p.Addr()
}
