package echo

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// The engines a Server can serve connections with; see Server.Engine.
const (
	EngineAuto      = "auto"
	EngineGoroutine = "goroutine"
	EngineEpoll     = "epoll"
)

// engine returns the engine Serve uses, checking the name.
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

// acquireLoop returns the server's event loop, starting it if this is its
// first user, or nil when Serve uses the goroutine engine. Each non-nil
// result must be given back with releaseLoop.
func (s *Server) acquireLoop() (*eventLoop, error) {
	name, err := s.engine()
	if err != nil || name != EngineEpoll {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loop == nil {
		s.loop, err = startEventLoop(s)
		if err != nil {
			return nil, err
		}
	}
	s.loopServes++
	return s.loop, nil
}

// releaseLoop gives back what acquireLoop returned.
func (s *Server) releaseLoop() {
	s.mu.Lock()
	s.loopServes--
	s.mu.Unlock()
	s.stopLoopIfUnused()
}

// stopLoopIfUnused stops the event loop once no Serve call uses it and no
// connection is left in it, and waits for its goroutines.
func (s *Server) stopLoopIfUnused() {
	s.mu.Lock()
	loop := s.loop
	if loop == nil || s.loopServes > 0 || s.loopConns > 0 {
		s.mu.Unlock()
		return
	}
	s.loop = nil
	s.mu.Unlock()
	loop.stop()
}

// handOff gives c to the event loop, which owns it from now on; the loop's
// report of its end undoes what add did. When the loop fails to take it, c
// is closed and its end logged here. It reports false, with c untouched and
// still registered, when the loop could not even start to take c because
// the process is out of file descriptors (taking a socket duplicates it):
// the caller then serves c on a goroutine, which needs none, rather than
// drop a client it has already accepted.
func (s *Server) handOff(loop *eventLoop, g *loopGroup, c *net.TCPConn) bool {
	s.mu.Lock()
	key := s.conns[c]
	delete(s.conns, c)
	s.loopConns++
	s.mu.Unlock()
	taken, err := loop.serve(c, g)
	if err == nil {
		return true
	}
	s.mu.Lock()
	s.loopConns--
	if !taken {
		s.conns[c] = key
		s.mu.Unlock()
		return false
	}
	s.releaseKeyLocked(key)
	s.mu.Unlock()
	s.logger().Error("event loop refused a connection", "remote", c.RemoteAddr().String(), "err", err)
	s.wg.Done()
	return true
}

// serveEventLoop is Serve for a TCP listener whose connections the event
// loops accept themselves.
func (s *Server) serveEventLoop(ctx context.Context, tl *net.TCPListener) error {
	a := newLoopListener(tl)
	if !s.track(a) {
		a.Close()
		return ErrServerClosed
	}
	defer s.untrack(a)
	loop, err := s.acquireLoop()
	if err != nil {
		return err
	}
	defer s.releaseLoop()
	group := loop.newGroup()
	if err := a.start(loop, group, s.admitToLoop, s.loopAcceptFailed(a)); err != nil {
		return fmt.Errorf("serve %s: %w", tl.Addr(), err)
	}
	select {
	case <-ctx.Done():
		a.Close()
		// Once the loops have let go of the listener they accept no
		// more connections into the group, so waiting for it is final.
		<-a.done()
		group.Close()
		group.Wait()
		return ctx.Err()
	case <-a.closed:
		<-a.done()
		if err := a.failure(); err != nil {
			return fmt.Errorf("accept on %s: %w", tl.Addr(), err)
		}
		return ErrServerClosed
	}
}

// admitToLoop applies the connection limits to a connection an event loop
// has accepted and counts it, as add does for a net.Conn; the loop resets
// the connections it refuses.
func (s *Server) admitToLoop(remote netip.AddrPort) bool {
	r, ok := s.admitLoopConn(remote)
	if !ok && r != reasonNone {
		s.limited(r)
	}
	return ok
}

func (s *Server) admitLoopConn(remote netip.AddrPort) (Reason, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, r, ok := s.admitLocked(remote.Addr()); !ok {
		return r, false
	}
	s.wg.Add(1)
	s.loopConns++
	s.counts.accepted.Add(1)
	return 0, true
}

// loopAcceptFailed returns what an event loop does when accepting on a
// fails: count, log and retry after the back-off, as Serve does, or end a's
// Serve call.
func (s *Server) loopAcceptFailed(a *loopListener) func(error, time.Duration) bool {
	return func(err error, backoff time.Duration) bool {
		if isTemporary(err) {
			s.acceptFailed(a, err, backoff)
			return true
		}
		a.fail(err)
		return false
	}
}

// loopConnEnded is the event loop's report that a connection it served has
// ended: the counterpart of add, handOff and admitToLoop. The connection's
// per-source place is found again from its remote address, which the loop
// keeps.
func (s *Server) loopConnEnded(remote netip.AddrPort) {
	s.mu.Lock()
	s.loopConns--
	if s.MaxConnsPerIP > 0 && remote.IsValid() {
		s.releaseKeyLocked(sourceKey(remote.Addr()))
	}
	s.mu.Unlock()
	s.wg.Done()
}
