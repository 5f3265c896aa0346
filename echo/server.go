// Package echo implements the echo service of RFC 862 over TCP and UDP: every
// byte a client sends is written back to it, unmodified and as it arrives. A
// Server is safe to expose to untrusted clients: the memory a connection
// holds is bounded whatever it sends, slow readers are met with TCP
// backpressure, and the limits in its fields shed abusive sources one
// connection or datagram at a time.
package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
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

	// Engine chooses how connections are served. "goroutine" gives each
	// connection its own goroutine: the portable reference engine. "epoll"
	// (Linux only) serves plain TCP connections from a few event loops,
	// one per usable CPU, at a fraction of the memory and CPU; connections
	// that are not plain TCP (a listener that wraps them, such as TLS or
	// PROXY protocol) still get a goroutine. "auto" (also the empty
	// string) is "epoll" on Linux and "goroutine" elsewhere. Every limit
	// above holds in both.
	Engine string

	// MaxConns is how many TCP connections may be open at once, over all
	// listeners and engines; a connection beyond it is closed (reset) as
	// soon as it is accepted. Zero means no limit. echod serve derives its
	// default from the file-descriptor limit.
	MaxConns int
	// MaxConnsPerIP is how many TCP connections one source address (for
	// IPv6, one /64) may have open at once. Zero means no limit.
	MaxConnsPerIP int

	// IdleTimeout closes a connection that makes no progress in either
	// direction for this long: nothing arrives, and nothing it was sent is
	// taken off the server's hands. Every byte the client takes off the
	// server's socket send buffer counts as it happens (on Linux, where
	// the kernel says how many are left), so a slow client that keeps
	// reading stays open, over TLS too; a client that never reads stalls
	// the server's writes, and counts as idle. Engines may close up to an
	// eighth of IdleTimeout late. Zero means no timeout.
	IdleTimeout time.Duration
	// MaxSessionDuration closes a connection this long after it was
	// accepted, whatever it is doing. Zero means no limit.
	MaxSessionDuration time.Duration
	// MaxSessionBytes ends a connection once it has sent this many bytes:
	// all of them are echoed, then the server shuts down its side, so the
	// client reads exactly its first MaxSessionBytes bytes and then EOF.
	// What the client sends after that is read and thrown away (so that
	// closing does not reset the connection and lose echo still on its
	// way) until the client closes its side, or until it has taken none of
	// its echo for 2 seconds. Zero means no limit.
	MaxSessionBytes int64

	// UDPAllowPrivilegedPorts lets ServeUDP answer datagrams from source
	// ports below 1024, which the loop guard otherwise drops because other
	// echo, chargen and daytime services live there. Datagrams from
	// multicast, broadcast or unspecified addresses, from port 0, or from the
	// server's own UDP ports are dropped regardless, and so are those sent
	// to a broadcast or multicast address (on Linux, which reports it) and
	// those that bring back, too soon, the bytes the server last sent
	// their source: another echo service, on any port, answering it.
	UDPAllowPrivilegedPorts bool
	// UDPSourceRate is how many datagrams per second ServeUDP answers from
	// one source address (for IPv6, one /64), with bursts of up to one
	// second's worth; the rest are dropped. Zero means no limit.
	UDPSourceRate int
	// UDPGlobalRate is how many datagrams per second ServeUDP answers in
	// all, over every source and socket, with bursts of up to one second's
	// worth. Zero means no limit.
	UDPGlobalRate int

	mu        sync.Mutex
	closing   bool // set once by Shutdown or Close; no connection starts after it
	listeners map[net.Listener]struct{}
	packets   map[net.PacketConn]struct{}
	conns     map[net.Conn]netip.Addr // served by goroutines, with the source key each counts under
	perIP     map[netip.Addr]int      // open connections by source key, when MaxConnsPerIP is set
	udpGuard  *udpGuard               // made by the first ServeUDP
	wg        sync.WaitGroup          // one count per connection goroutine, loop connection and UDP reader
	buffers   sync.Pool               // of *[bufferSize]byte, shared by all connections

	counts      counters
	limitLog    limitLog
	acceptLog   throttle
	acceptFails uint64 // accept errors not yet logged, under mu

	// The event loop, while a Serve call or a connection uses it.
	loop       *eventLoop
	loopServes int // Serve calls using loop
	loopConns  int // connections in loop

	reserved int // places held by Reserve
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Serve accepts connections on l and echoes each of them on its own goroutine.
// It returns ErrServerClosed after Shutdown or Close. When ctx is done it
// closes l and every connection it accepted, waits for them to end, and
// returns ctx.Err(). Serve always closes l before returning.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	engine, err := s.engine()
	if err != nil {
		l.Close()
		return err
	}
	if tl, ok := l.(*net.TCPListener); ok && engine == EngineEpoll {
		// The event loops accept the connections themselves.
		return s.serveEventLoop(ctx, tl)
	}
	if !s.track(l) {
		l.Close()
		return ErrServerClosed
	}
	defer s.untrack(l)
	loop, err := s.acquireLoop()
	if err != nil {
		return err
	}
	// Connections of this call alone, so a cancelled ctx ends only them.
	var mine sync.WaitGroup
	var group *loopGroup
	if loop != nil {
		defer s.releaseLoop()
		group = loop.newGroup()
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				if group != nil {
					group.Close()
					group.Wait()
				}
				mine.Wait()
				return ctx.Err()
			}
			if s.isClosing() {
				return ErrServerClosed
			}
			if !isTemporary(err) {
				return fmt.Errorf("accept on %s: %w", l.Addr(), err)
			}
			// Running out of file descriptors and similar errors pass: back
			// off rather than spin, and keep serving the connections we have.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.acceptFailed(l, err, backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		if r, ok := s.add(c); !ok {
			if r != reasonNone {
				// Reset rather than close: the refused client learns at
				// once, and the server keeps no TIME_WAIT state for it.
				if tc, ok := c.(interface{ SetLinger(int) error }); ok {
					tc.SetLinger(0)
				}
				s.limited(r)
			}
			c.Close()
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && loop != nil {
			if s.handOff(loop, group, tc) {
				continue
			}
		}
		mine.Add(1)
		go func() {
			defer s.wg.Done()
			defer mine.Done()
			defer s.remove(c)
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			s.serveConn(c)
		}()
	}
}

// Shutdown stops the server gracefully: it closes every listener at once, so
// Serve returns, then waits for open connections to end by themselves. If ctx
// is done first, it closes the connections that remain, waits for their
// goroutines, and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.stopLoopIfUnused()
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
// waits for the connection goroutines to return.
func (s *Server) Close() error {
	s.beginClose()
	s.closeConns()
	s.wg.Wait()
	s.stopLoopIfUnused()
	return nil
}

func (s *Server) track(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrack(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
	l.Close()
}

// reasonNone is what admission returns when it refuses a connection for no
// limit, because the server is closing.
const reasonNone Reason = numReasons

// admitLocked applies the connection limits to a connection from addr and,
// when it is within them, takes its places: one under MaxConns, and one
// under its source key (returned; invalid when none is taken) under
// MaxConnsPerIP. An invalid addr (a peer that is not IP) counts under
// MaxConns only. The check and the count happen under s.mu, so that the
// limits hold exactly however fast connections arrive.
func (s *Server) admitLocked(addr netip.Addr) (key netip.Addr, r Reason, ok bool) {
	if s.closing {
		return netip.Addr{}, reasonNone, false
	}
	if s.MaxConns > 0 && len(s.conns)+s.loopConns+s.reserved >= s.MaxConns {
		return netip.Addr{}, ReasonMaxConns, false
	}
	if s.MaxConnsPerIP > 0 && addr.IsValid() {
		key = sourceKey(addr)
		if s.perIP[key] >= s.MaxConnsPerIP {
			return netip.Addr{}, ReasonMaxConnsPerIP, false
		}
		if s.perIP == nil {
			s.perIP = make(map[netip.Addr]int)
		}
		s.perIP[key]++
	}
	return key, 0, true
}

// Reserve holds a place for one connection from addr under MaxConns and
// MaxConnsPerIP (addr keyed as the per-IP limit keys it: IPv6 by /64), until
// release is called (release is idempotent), for connections that a
// listener wrapper holds before Serve sees them or that another server
// serves. It reports false, counting the refusal in Stats under the limit's
// reason, when the connection is over a limit or the server is closing; the
// release it then returns does nothing. An invalid addr (a peer that is not
// IP) is counted under MaxConns only. A reserved place is not a connection
// of this server: Stats.Conns and Stats.Accepted leave it out, and Shutdown
// does not wait for it.
func (s *Server) Reserve(addr netip.Addr) (release func(), ok bool) {
	s.mu.Lock()
	key, r, ok := s.admitLocked(addr)
	if ok {
		s.reserved++
	}
	s.mu.Unlock()
	if !ok {
		if r != reasonNone {
			s.limited(r)
		}
		return func() {}, false
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.reserved--
			s.releaseKeyLocked(key)
			s.mu.Unlock()
		})
	}, true
}

// add registers c and counts its goroutine, unless the server is closing or
// c is over a connection limit, which it returns. The limits are checked
// here, in the accept loop, whichever engine then serves the connection, and
// the count happens under the same lock so that Shutdown's Wait never races
// with a late Add.
func (s *Server) add(c net.Conn) (Reason, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Non-IP connections (a Unix socket) have no source to count by.
	var addr netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr()
	}
	key, r, ok := s.admitLocked(addr)
	if !ok {
		return r, false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]netip.Addr)
	}
	s.conns[c] = key
	s.wg.Add(1)
	s.counts.accepted.Add(1)
	return 0, true
}

func (s *Server) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.conns[c]
	delete(s.conns, c)
	if ok {
		s.releaseKeyLocked(key)
	}
}

// releaseKeyLocked gives back the per-source place a connection held.
// Entries go when they reach zero, so the table holds at most one per open
// connection.
func (s *Server) releaseKeyLocked(key netip.Addr) {
	if !key.IsValid() {
		return
	}
	if s.perIP[key]--; s.perIP[key] <= 0 {
		delete(s.perIP, key)
	}
}

// trackPacket registers a UDP socket so that Shutdown and Close close it,
// and returns the server's UDP guard, unless the server is closing.
func (s *Server) trackPacket(pc net.PacketConn) (*udpGuard, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, false
	}
	if s.packets == nil {
		s.packets = make(map[net.PacketConn]struct{})
	}
	s.packets[pc] = struct{}{}
	if s.udpGuard == nil {
		s.udpGuard = newUDPGuard(s)
	}
	s.udpGuard.addLocalPort(pc)
	return s.udpGuard, true
}

func (s *Server) untrackPacket(pc net.PacketConn) {
	s.mu.Lock()
	delete(s.packets, pc)
	s.mu.Unlock()
	pc.Close()
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

// acceptFailed counts a failed accept and logs it, at most once per
// logInterval with the number of failures since the previous line: when the
// process is out of file descriptors, every retry fails.
func (s *Server) acceptFailed(l net.Listener, err error, retryIn time.Duration) {
	s.counts.acceptErrors.Add(1)
	s.mu.Lock()
	s.acceptFails++
	n := s.acceptFails
	log := s.acceptLog.allow(time.Now())
	if log {
		s.acceptFails = 0
	}
	s.mu.Unlock()
	if log {
		s.logger().Error("accept failed; retrying, and serving the open connections meanwhile",
			"listener", l.Addr().String(), "err", err, "retry_in", retryIn,
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
	for l := range s.listeners {
		l.Close()
	}
	for pc := range s.packets {
		pc.Close()
	}
	s.mu.Unlock()
	// What the throttle held back is not lost at exit.
	s.logLimits()
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	if s.loop != nil {
		s.loop.closeAll()
	}
}

// isTemporary reports whether an accept error is worth retrying: a shortage
// of file descriptors, buffers or memory, or a connection that died in the
// accept queue.
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
