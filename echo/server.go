// Package echo implements the echo service of RFC 862 over TCP and UDP: every
// byte a client sends is written back to it, unmodified and as it arrives. A
// Server is safe to expose to untrusted clients: a connection's memory is
// bounded, slow readers meet TCP backpressure, and its limits shed abusive
// sources one connection or datagram at a time.
package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/echo/internal/backoff"
)

// ErrServerClosed is returned by Serve after a call to Shutdown or Close.
var ErrServerClosed = errors.New("echo: server closed")

// Server serves echo on the listeners given to Serve. The zero value is ready
// to use; the exported fields configure it and must not change once Serve has
// been called.
type Server struct {
	// Logger receives a line for each finished connection at debug level, a
	// summary of the limits applied at info level and accept errors at error
	// level; the last two at most once per 10 seconds each, however many
	// there are. Nil discards everything.
	Logger *slog.Logger

	// Engine chooses how the connections of a *net.TCPListener are
	// served. "goroutine" gives each its own goroutine: the portable
	// reference engine. "epoll" (Linux only) serves them from event loops,
	// one per usable CPU, at a fraction of the memory and CPU. "auto" (or
	// "") is "epoll" on Linux and "goroutine" elsewhere. A listener that
	// wraps its connections (TLS, PROXY protocol) is served on goroutines
	// whatever the engine. Every limit below holds in both engines.
	Engine string

	// MaxConns is how many TCP connections may be open at once, over all
	// listeners and engines, with the places held by Reserve; one beyond it
	// is reset as soon as it is accepted. Zero means no limit.
	MaxConns int
	// MaxConnsPerIP is how many TCP connections one source address (for
	// IPv6, one /64) may have open at once. Zero means no limit.
	MaxConnsPerIP int

	// IdleTimeout closes a connection that makes no progress in either
	// direction for this long: nothing arrives, and the client takes none
	// of its echo. A slow client that keeps reading stays open, over TLS
	// too (on Linux each byte it takes off the send buffer counts); one
	// that never reads counts as idle. Engines may close up to an eighth of
	// IdleTimeout late. Zero means none; beyond a century means a century.
	IdleTimeout time.Duration
	// MaxSessionDuration closes a connection this long after it was
	// accepted, whatever it is doing. Zero means no limit.
	MaxSessionDuration time.Duration
	// MaxSessionBytes ends a connection once it has sent this many bytes:
	// the client reads exactly its first MaxSessionBytes bytes, then EOF.
	// What it sends after that is thrown away (closing would reset the
	// connection and lose echo on its way) until it closes its side, or
	// takes none of its echo for 2 seconds. Zero means no limit.
	MaxSessionBytes int64

	// UDPAllowPrivilegedPorts lets ServeUDP answer datagrams from source
	// ports below 1024, where other echo, chargen and daytime services
	// live. The rest of the loop guard (see ServeUDP) holds regardless.
	UDPAllowPrivilegedPorts bool
	// UDPSourceRate is how many datagrams per second ServeUDP answers from
	// one source address (for IPv6, one /64), in bursts of up to one
	// second's worth; the rest are dropped. Zero means no limit.
	UDPSourceRate int
	// UDPGlobalRate is how many datagrams per second ServeUDP answers in
	// all, in bursts of up to one second's worth. Zero means no limit.
	UDPGlobalRate int

	// Bandwidth, if set, holds echo to its budgets of bytes per second
	// (per connection, per address) and its egress budget: a TCP
	// connection is read only as fast as its echo may be sent, so a client
	// that sends faster meets TCP backpressure and loses nothing; a UDP
	// reply past its address's budget is dropped; while the egress budget
	// is spent, new connections are refused and datagrams dropped
	// (ReasonEgressBudget). Share one Limiter with the other servers of
	// the same clients, such as a web.Handler's listener, so that an
	// address has one budget over all of them. Nil limits nothing.
	Bandwidth *bandwidth.Limiter

	mu        sync.Mutex
	closing   bool               // set once by Shutdown or Close; no connection starts after it
	listeners map[uint64]func()  // what stops each Serve or ServeUDP call, by call
	calls     uint64             // Serve and ServeUDP calls so far, for their ids
	conns     map[*conn]struct{} // served on goroutines, for Close to close
	served    int                // connections open, in either engine
	reserved  int                // places held through Reserve
	perIP     map[netip.Addr]int // places by source key, when MaxConnsPerIP is set
	udpGuard  *udpGuard          // made by the first ServeUDP
	wg        sync.WaitGroup     // one count per open connection and UDP reader
	loop      *eventLoop         // from the first Serve that needs it until Shutdown or Close
	buffers   sync.Pool          // of *[bufferSize]byte, shared by all connections

	counts      counters
	limitLog    limitLog
	acceptFails uint64    // accept errors not yet logged, under mu
	acceptLog   time.Time // when the next accept error may be logged, under mu
}

// Serve accepts connections on l and echoes them (see Engine) until
// Shutdown or Close, and then returns ErrServerClosed. When ctx is done, it
// stops accepting and returns ctx.Err(); the connections it accepted go on,
// as with net/http. Serve always closes l before returning.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	engine, err := s.engine()
	if err != nil {
		l.Close()
		return err
	}
	if tl, ok := l.(*net.TCPListener); ok && engine == EngineEpoll {
		return s.serveLoop(ctx, tl)
	}
	untrack, ok := s.trackListener(func() { l.Close() })
	if !ok {
		return ErrServerClosed
	}
	defer untrack()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var pause time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case s.isClosing():
				return ErrServerClosed
			case !isTemporary(err):
				return fmt.Errorf("accept on %s: %w", l.Addr(), err)
			}
			// Running out of file descriptors passes: back off, don't spin.
			pause = backoff.Next(pause)
			s.acceptFailed(l.Addr(), err, pause)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			continue
		}
		pause = 0
		c := &conn{Conn: nc}
		if s.Bandwidth != nil {
			c.stop = make(chan struct{})
		}
		if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			c.source = ta.AddrPort().Addr().Unmap()
		}
		if !s.admit(c.source, c) {
			refuse(nc)
			continue
		}
		go s.serveConn(c)
	}
}

// Shutdown stops the server gracefully: it closes every listener at once, so
// Serve returns, then waits for open connections to end by themselves. If ctx
// is done first, it closes the connections that remain, waits for them to
// end, and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	defer s.endClose()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: it closes every listener and connection and
// waits for them to end.
func (s *Server) Close() error {
	s.beginClose()
	s.closeConns()
	s.wg.Wait()
	s.endClose()
	return nil
}

// engine returns the engine Serve uses for a *net.TCPListener.
func (s *Server) engine() (string, error) {
	switch s.Engine {
	case EngineGoroutine:
		return EngineGoroutine, nil
	case "", EngineAuto:
		if eventLoopSupported {
			return EngineEpoll, nil
		}
		return EngineGoroutine, nil
	case EngineEpoll:
		if !eventLoopSupported {
			return "", fmt.Errorf("engine %q: only on Linux", s.Engine)
		}
		return EngineEpoll, nil
	default:
		return "", fmt.Errorf("unknown engine %q: want %s, %s or %s", s.Engine, EngineAuto, EngineGoroutine, EngineEpoll)
	}
}

// The engines a Server can serve connections with; see Server.Engine.
const (
	EngineAuto      = "auto"
	EngineGoroutine = "goroutine"
	EngineEpoll     = "epoll"
)

// trackListener registers stop, which ends one Serve or ServeUDP call, for
// Shutdown and Close to call (at once if the server is closing). Calls are
// tracked by id: a net.Listener or net.PacketConn need not be comparable,
// and would make a map panic. untrack forgets the call and calls stop.
// Nothing calls stop under s.mu: closing a listener wrapper may wait for
// goroutines that give back places they took with Reserve, which takes it.
func (s *Server) trackListener(stop func()) (untrack func(), ok bool) {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		stop()
		return nil, false
	}
	if s.listeners == nil {
		s.listeners = make(map[uint64]func())
	}
	id := s.calls
	s.calls++
	s.listeners[id] = stop
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.listeners, id)
		s.mu.Unlock()
		stop()
	}, true
}

// admitLocked is the one admission check, for Reserve and both engines: it
// refuses a connection from source (the zero Addr if not IP) while the
// server is closing or over a limit, and otherwise takes its per-IP place.
// Checking and counting under s.mu makes the limits exact however fast
// connections arrive, and keeps Shutdown's Wait from racing a late Add.
func (s *Server) admitLocked(source netip.Addr) (Reason, bool) {
	if s.closing {
		return endClosed, false
	}
	if s.MaxConns > 0 && s.served+s.reserved >= s.MaxConns {
		return ReasonMaxConns, false
	}
	if key, ok := s.perIPKey(source); ok {
		if s.perIP[key] >= s.MaxConnsPerIP {
			return ReasonMaxConnsPerIP, false
		}
		if s.perIP == nil {
			s.perIP = make(map[netip.Addr]int)
		}
		s.perIP[key]++
	}
	return 0, true
}

// leaveLocked gives back the per-source place admitLocked took; entries go
// at zero, so the table holds at most one per open connection.
func (s *Server) leaveLocked(source netip.Addr) {
	if key, ok := s.perIPKey(source); ok {
		if s.perIP[key]--; s.perIP[key] <= 0 {
			delete(s.perIP, key)
		}
	}
}

// perIPKey returns the key source counts under for MaxConnsPerIP, if any.
func (s *Server) perIPKey(source netip.Addr) (netip.Addr, bool) {
	if s.MaxConnsPerIP <= 0 || !source.IsValid() {
		return netip.Addr{}, false
	}
	return sourceKey(source), true
}

// Reserve holds a place for one connection from addr under MaxConns and
// MaxConnsPerIP until release is called (more than once is fine), for
// connections a listener wrapper holds before Serve sees them, or another
// server serves. Over a limit or while closing it reports false, counting
// the refusal in Stats, and release does nothing. An invalid addr counts
// under MaxConns only. A reserved place is no connection of this server:
// Stats.Conns and Stats.Accepted leave it out; Shutdown does not wait for it.
func (s *Server) Reserve(addr netip.Addr) (release func(), ok bool) {
	s.mu.Lock()
	r, ok := s.admitLocked(addr)
	if ok {
		s.reserved++
	}
	s.mu.Unlock()
	if !ok {
		s.limited(r)
		return func() {}, false
	}
	return sync.OnceFunc(func() {
		s.mu.Lock()
		s.reserved--
		s.leaveLocked(addr)
		s.mu.Unlock()
	}), true
}

// admit admits a connection from source that this server serves: on a
// goroutine as c, which Close closes, or in the event loops with c nil.
func (s *Server) admit(source netip.Addr, c *conn) bool {
	// Not in admitLocked: Reserve's callers may refuse in their own
	// words, as the web echo answers 503.
	if s.Bandwidth.Spent(time.Now()) {
		s.limited(ReasonEgressBudget)
		return false
	}
	s.mu.Lock()
	r, ok := s.admitLocked(source)
	if ok {
		s.served++
		s.wg.Add(1)
		s.counts.accepted.Add(1)
		if c != nil {
			if s.conns == nil {
				s.conns = make(map[*conn]struct{})
			}
			s.conns[c] = struct{}{}
		}
	}
	s.mu.Unlock()
	if !ok {
		s.limited(r)
	}
	return ok
}

// refuse resets a connection that admission refused: the client learns at
// once, and the server keeps no TIME_WAIT state for it.
func refuse(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// ended is what an engine reports about a connection once it is closed.
type ended struct {
	source   netip.Addr // as admitted
	in, out  int64      // bytes read from and written to the client
	duration time.Duration
	reason   Reason
	err      error // why, when reason is endFailed: the log names the end by it
}

// connEnded is admit's counterpart for both engines: it counts the limit
// that ended the connection, logs the end, and gives its places back.
// remote is called only for the debug log: nothing is formatted otherwise.
func (s *Server) connEnded(c *conn, remote func() string, e ended) {
	s.limited(e.reason)
	if s.Logger != nil && s.Logger.Enabled(context.Background(), slog.LevelDebug) {
		reason := e.reason.String()
		if e.err != nil {
			// Such as a wrapper's (tls-handshake-timeout).
			reason = e.err.Error()
		}
		s.Logger.Debug("connection closed", "remote", remote(), "bytes_in", e.in, "bytes_out", e.out,
			"duration", e.duration, "reason", reason)
	}
	s.mu.Lock()
	s.served--
	delete(s.conns, c)
	s.leaveLocked(e.source)
	s.mu.Unlock()
	s.wg.Done()
}

// guardUDP returns the server's UDP guard, made by the first ServeUDP,
// with pc's port among the server's own.
func (s *Server) guardUDP(pc net.PacketConn) *udpGuard {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udpGuard == nil {
		s.udpGuard = newUDPGuard(s)
	}
	s.udpGuard.addLocalPort(pc)
	return s.udpGuard
}

// addGoroutine counts one more goroutine that Shutdown and Close wait for,
// unless the server is closing.
func (s *Server) addGoroutine() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	return true
}

// acceptFailed counts a failed accept and logs it at most once per
// logInterval: out of file descriptors, every retry fails.
func (s *Server) acceptFailed(addr net.Addr, err error, retryIn time.Duration) {
	s.counts.acceptErrors.Add(1)
	s.mu.Lock()
	s.acceptFails++
	n := s.acceptFails
	now := time.Now()
	log := !now.Before(s.acceptLog)
	if log {
		s.acceptFails = 0
		s.acceptLog = now.Add(logInterval)
	}
	s.mu.Unlock()
	if log && s.Logger != nil {
		s.Logger.Error("accept failed; retrying, and serving the open connections meanwhile",
			"listener", addr.String(), "err", err, "retry_in", retryIn,
			"failures", n, "next_report_in", logInterval)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) beginClose() {
	s.mu.Lock()
	s.closing = true
	stops := slices.Collect(maps.Values(s.listeners))
	s.mu.Unlock()
	// Outside the lock (see trackListener); no listener is tracked after
	// closing is set.
	for _, stop := range stops {
		stop()
	}
	// What the throttle held back is not lost at exit.
	s.logLimits()
}

// closeConns closes every open connection; those on goroutines outside the
// lock, since closing one (TLS says goodbye) may take a while.
func (s *Server) closeConns() {
	s.mu.Lock()
	conns := slices.Collect(maps.Keys(s.conns))
	if s.loop != nil {
		s.loop.CloseAll()
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// endClose stops the event loops once every connection has ended, and logs
// the limits applied while they drained.
func (s *Server) endClose() {
	s.mu.Lock()
	loop := s.loop
	s.loop = nil
	s.mu.Unlock()
	if loop != nil {
		loop.Stop()
	}
	s.limitLog.stop()
	s.logLimits()
}

// isTemporary reports whether an accept or read error is worth retrying.
func isTemporary(err error) bool {
	for _, errno := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
