package echo

import (
	"net/netip"
	"sync"

	"github.com/echod/echod/bandwidth"
)

// places is the one admission check's state, for Reserve and both engines:
// the places taken under MaxConns and MaxConnsPerIP. Its lock is held only
// to count, never while waiting or logging, so the event loops may take
// it: checking and counting under it makes the limits exact however fast
// connections arrive, and keeps Shutdown's Wait from racing a late Add.
type places struct {
	mu     sync.Mutex
	closed bool               // set by Shutdown and Close: every place is refused
	taken  int                // by open connections and by Reserve
	perIP  map[netip.Addr]int // places by source key, when MaxConnsPerIP is set
}

// take refuses a place to a connection from source (the zero Addr if not
// IP) while the server is closing or over a limit, and otherwise takes
// it; for a connection the server serves (serve), it counts it as one
// that Shutdown waits for, and in Stats.
func (p *places) take(s *Server, source netip.Addr, serve bool) (Reason, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ReasonShutdown, false
	}
	if s.MaxConns > 0 && p.taken >= s.MaxConns {
		return ReasonMaxConns, false
	}
	if key, ok := s.perIPKey(source); ok {
		if p.perIP[key] >= s.MaxConnsPerIP {
			return ReasonMaxConnsPerIP, false
		}
		if p.perIP == nil {
			p.perIP = make(map[netip.Addr]int)
		}
		p.perIP[key]++
	}
	p.taken++
	if serve {
		s.wg.Add(1)
		s.served.Add(1)
		s.counts.accepted.Add(1)
	}
	return 0, true
}

// leave gives back the place take took; per-source entries go at zero, so
// the table holds at most one per open connection.
func (p *places) leave(s *Server, source netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.taken--
	if key, ok := s.perIPKey(source); ok {
		if p.perIP[key]--; p.perIP[key] <= 0 {
			delete(p.perIP, key)
		}
	}
}

// close refuses every place from now on.
func (p *places) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// perIPKey returns the key source counts under for MaxConnsPerIP, if any.
func (s *Server) perIPKey(source netip.Addr) (netip.Addr, bool) {
	if s.MaxConnsPerIP <= 0 || !source.IsValid() {
		return netip.Addr{}, false
	}
	return bandwidth.Key(source), true
}
