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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/echo/internal/backoff"
	"github.com/echod/echod/echo/internal/session"
	"github.com/echod/echod/internal/drain"
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
	// wraps its connections in TLS is served on goroutines whatever the
	// engine; a PROXY protocol one (internal/proxied) reads each header on
	// a goroutine, then hands the connection to the loops (see Adopt).
	// Every limit below holds in both engines.
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
	// connection is read only about as fast as its echo may be sent, and
	// what takes it past its budget waits, reading nothing meanwhile, so a
	// client that sends faster meets TCP backpressure and loses nothing; a
	// UDP reply past its address's budget is dropped; while the egress
	// budget is spent, new connections are refused and datagrams dropped
	// (ReasonEgressBudget). Share one Limiter with the other servers of
	// the same clients, such as a web.Handler's listener, so that an
	// address has one budget over all of them. Nil limits nothing.
	Bandwidth *bandwidth.Limiter

	mu        sync.Mutex
	closing   bool               // set once by Shutdown or Close; no connection starts after it
	listeners map[uint64]func()  // what stops each Serve or ServeUDP call, by call
	calls     uint64             // Serve and ServeUDP calls so far, for their ids
	conns     map[*conn]struct{} // served on goroutines, for Close to close
	udpGuard  *udpGuard          // made by the first ServeUDP
	wg        sync.WaitGroup     // one count per open connection and UDP reader
	places    places             // the admission check's counts, under their own lock
	served    atomic.Int64       // connections open, in either engine, for Stats
	loop      *eventLoop         // from the first Serve that needs it until Shutdown or Close
	buffers   sync.Pool          // of *[bufferSize]byte, shared by all connections

	policyOnce    sync.Once
	sessionPolicy *session.Policy // the limits of every session, from the fields above

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
		if d, ok := nc.(detachable); ok && engine == EngineEpoll {
			s.handOff(nc, d)
			continue
		}
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

// detachable is a connection that is a socket and the bytes a wrapper read
// ahead of it, and nothing more once they are read: the PROXY protocol's
// (internal/proxied), after its header.
type detachable interface {
	Detach() (sock net.Conn, buffered []byte)
}

// handOff serves nc, which d is, through Adopt: a connection whose start
// took a goroutine is served by the event loops like a plain one.
func (s *Server) handOff(nc net.Conn, d detachable) {
	h := Handoff{}
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		h.Remote = ta.AddrPort()
	}
	h.Conn, h.Buffered = d.Detach()
	// A refusal is counted, and the connection reset, by Adopt.
	s.Adopt(h)
}

// Shutdown stops the server gracefully: it closes every listener at once, so
// Serve returns, then waits for open connections to end by themselves. If ctx
// is done first, it closes the connections that remain, waits for them to
// end, and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	defer s.endClose()
	return drain.Wait(ctx, &s.wg, s.closeConns)
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

// EventLoops reports whether the server serves TCP connections (its own
// and those it adopts) on event loops: Engine is epoll, or auto on Linux.
func (s *Server) EventLoops() bool {
	e, err := s.engine()
	return err == nil && e == EngineEpoll
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

// Reserve holds a place for one connection from addr under MaxConns and
// MaxConnsPerIP until release is called (more than once is fine), for
// connections a listener wrapper holds before Serve sees them, or another
// server serves. Over a limit or while closing it reports false, counting
// the refusal in Stats, and release does nothing. An invalid addr counts
// under MaxConns only. A reserved place is no connection of this server:
// Stats.Conns and Stats.Accepted leave it out; Shutdown does not wait for it.
func (s *Server) Reserve(addr netip.Addr) (release func(), ok bool) {
	r, ok := s.places.take(s, addr, false)
	if !ok {
		s.limited(r)
		return func() {}, false
	}
	return sync.OnceFunc(func() { s.places.leave(s, addr) }), true
}

// admit admits a connection from source that this server serves: on a
// goroutine as c, which Close closes, or in the event loops with c nil.
func (s *Server) admit(source netip.Addr, c *conn) bool {
	_, ok := s.admitReason(source, c)
	return ok
}

// admitReason is admit, saying why it refused. A connection on a goroutine
// is admitted under s.mu too, so that Close finds it among s.conns.
func (s *Server) admitReason(source netip.Addr, c *conn) (Reason, bool) {
	// Here, not in places.take: Reserve's callers may refuse in their own
	// words, as the web echo answers 503.
	if s.Bandwidth.Spent(time.Now()) {
		if c == nil {
			s.limitedLater(ReasonEgressBudget) // on a loop, which must not log
		} else {
			s.limited(ReasonEgressBudget)
		}
		return ReasonEgressBudget, false
	}
	if c == nil {
		return s.admitLoop(source)
	}
	s.mu.Lock()
	r, ok := s.places.take(s, source, true)
	if ok {
		if s.conns == nil {
			s.conns = make(map[*conn]struct{})
		}
		s.conns[c] = struct{}{}
	}
	s.mu.Unlock()
	if !ok {
		s.limited(r)
	}
	return r, ok
}

// admitLoop admits a connection the event loops serve, on a loop: it takes
// no lock but the places', and logs nothing there.
func (s *Server) admitLoop(source netip.Addr) (Reason, bool) {
	r, ok := s.places.take(s, source, true)
	if !ok {
		s.limitedLater(r)
	}
	return r, ok
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

// connEnded is admit's counterpart for the goroutine engine: it counts the
// end, logs it, and gives its place back. remote is called only for the
// debug log: nothing is formatted otherwise.
func (s *Server) connEnded(c *conn, remote func() string, e ended) {
	s.logEnd(remote, e)
	if c != nil {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
	s.countEnd(e.source, e.reason, false)
	s.closed()
}

// countEnd is what every engine does at once as a connection ends: it
// counts the reason and gives back the connection's place. On an event
// loop (later), a summary line this makes due is written by a timer's
// goroutine.
func (s *Server) countEnd(source netip.Addr, r Reason, later bool) {
	s.count(r, later)
	s.places.leave(s, source)
}

// closed is the last of a connection's end, once it is logged: Stats no
// longer counts it, and Shutdown no longer waits for it.
func (s *Server) closed() {
	s.served.Add(-1)
	s.wg.Done()
}

// logsEnds reports whether connection ends are logged (at debug level).
func (s *Server) logsEnds() bool {
	return s.Logger != nil && s.Logger.Enabled(context.Background(), slog.LevelDebug)
}

// logEnd writes the debug line about a connection's end.
func (s *Server) logEnd(remote func() string, e ended) {
	if !s.logsEnds() {
		return
	}
	reason := e.reason.String()
	if e.err != nil {
		// Such as a wrapper's (tls-handshake-timeout).
		reason = e.err.Error()
	}
	s.Logger.Debug("connection closed", "remote", remote(), "bytes_in", e.in, "bytes_out", e.out,
		"duration", e.duration, "reason", reason)
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
	s.places.close()
	stops := slices.Collect(maps.Values(s.listeners))
	s.mu.Unlock()
	// Outside the lock (see trackListener); no listener is tracked after
	// closing is set.
	for _, stop := range stops {
		stop()
	}
	s.sayGoodbye()
	// What the throttle held back is not lost at exit.
	s.logLimits()
}

// sayGoodbye starts the end of every connection with a processor, which
// writes its last message (a WebSocket close frame) and then ends as after
// MaxSessionBytes: a drain. Plain echo connections go on until they end.
func (s *Server) sayGoodbye() {
	s.mu.Lock()
	conns := slices.Collect(maps.Keys(s.conns))
	if s.loop != nil {
		s.loop.SayGoodbye()
	}
	s.mu.Unlock()
	for _, c := range conns {
		if w := c.watch.Load(); w != nil {
			w.sayGoodbye()
		}
	}
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
