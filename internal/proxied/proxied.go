// Package proxied accepts connections that arrive through a proxy or load
// balancer speaking the PROXY protocol (v1 or v2), so that a server sees, logs
// and limits each client by its own address rather than the proxy's. It
// reads the header before a connection is handed over, and rejects, counts
// and logs connections without a valid one or from peers not trusted to send
// one.
package proxied

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/time/rate"
)

// Reasons a connection is rejected, as counted in Stats and logged.
const (
	// ReasonHeader: no valid PROXY header arrived within the header timeout.
	ReasonHeader = "proxy-header"
	// ReasonUntrusted: the peer is not in Config.Trusted.
	ReasonUntrusted = "proxy-untrusted"
)

// Config configures a Listener. The zero value trusts every peer.
type Config struct {
	// Trusted lists the networks allowed to send a PROXY header; a
	// connection from anywhere else is closed at once. Empty trusts every
	// peer, which is right only when nothing but the proxy can reach the
	// listener.
	Trusted []netip.Prefix
	// HeaderTimeout is how long a connection may take to send its header
	// (default 5s).
	HeaderTimeout time.Duration
	// MaxPending is how many connections may be reading their header at
	// once (default 1024); beyond it, accepting waits.
	MaxPending int
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
}

// Listener wraps a TCP listener whose clients connect through a PROXY
// protocol proxy. Accept returns connections whose header has been read, so
// RemoteAddr is the client's address (the proxy's for a header with the
// LOCAL command, as health checks send) and never blocks.
type Listener struct {
	inner   net.Listener
	cfg     Config
	ready   chan accepted
	done    chan struct{} // closed by Close
	pending chan struct{} // a token per connection reading its header
	wg      sync.WaitGroup

	mu       sync.Mutex
	inflight map[net.Conn]struct{} // connections reading their header

	closeOnce sync.Once
	closeErr  error

	header, untrusted atomic.Uint64
	warn              rate.Sometimes
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
		inflight: make(map[net.Conn]struct{}),
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
		for c := range l.inflight {
			c.Close()
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
	return Stats{Header: l.header.Load(), Untrusted: l.untrusted.Load()}
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
		if !l.track(c) {
			<-l.pending
			c.Close()
			return
		}
		l.wg.Add(1)
		go l.readHeader(c)
	}
}

// readHeader reads c's PROXY header and hands c to Accept, or rejects it.
func (l *Listener) readHeader(raw net.Conn) {
	defer l.wg.Done()
	ok := l.trusted(raw.RemoteAddr())
	var err error
	var c *proxyproto.Conn
	if ok {
		c = proxyproto.NewConn(raw,
			proxyproto.WithPolicy(proxyproto.REQUIRE),
			proxyproto.SetReadHeaderTimeout(l.cfg.HeaderTimeout))
		// A zero-length read makes the library read and check the header,
		// and consumes nothing after it.
		_, err = c.Read(nil)
	}
	l.untrack(raw)
	<-l.pending
	select {
	case <-l.done:
		raw.Close()
		return
	default:
	}
	switch {
	case !ok:
		l.reject(raw, ReasonUntrusted, &l.untrusted, errors.New("peer not in -proxy-protocol-from"))
		return
	case err != nil:
		l.reject(raw, ReasonHeader, &l.header, err)
		return
	}
	select {
	case l.ready <- accepted{c: c}:
	case <-l.done:
		raw.Close()
	}
}

func (l *Listener) reject(c net.Conn, reason string, count *atomic.Uint64, err error) {
	c.Close()
	n := count.Add(1)
	l.warn.Do(func() {
		l.cfg.Logger.Warn("rejected connection", "reason", reason, "remote", c.RemoteAddr().String(),
			"err", err, "rejected_so_far", n, "log_interval", l.cfg.LogInterval)
	})
}

// trusted reports whether the peer at addr may send a PROXY header.
func (l *Listener) trusted(addr net.Addr) bool {
	if len(l.cfg.Trusted) == 0 {
		return true
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	// A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
	ip = ip.Unmap()
	for _, p := range l.cfg.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// track records c as reading its header, unless the listener is closed.
func (l *Listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.done:
		return false
	default:
	}
	l.inflight[c] = struct{}{}
	return true
}

func (l *Listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.inflight, c)
	l.mu.Unlock()
}
