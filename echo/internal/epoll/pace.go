//go:build linux

package epoll

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/echod/echod/bandwidth"
)

// The bandwidth budgets (Config.Bandwidth) in the loop: a connection reads
// about what its Flow allows now, and when what it read takes it past its
// budget, the echo waits in its tail and the connection is paused (watched
// for nothing) until the Flow says it may go: then the tail is flushed, and
// reading resumes. The client meets TCP backpressure meanwhile, and nothing
// is lost.

// budget is a connection's share of Config.Bandwidth. The loop keeps them
// beside its connections, by descriptor, and only with budgets: without,
// a connection costs not a byte more.
type budget struct {
	flow *bandwidth.Flow
	// resumeAt is when the paused connection may go on; 0: not paused.
	resumeAt int64
}

// pausedConn is a paused connection and the time it may go on.
type pausedConn struct {
	at int64
	c  *conn
}

// clock is the loop's time as the bandwidth budgets take it.
func (l *loop) clock() time.Time { return l.e.epoch.Add(time.Duration(l.now)) }

// budget returns c's budget, or nil without Config.Bandwidth.
func (l *loop) budget(c *conn) *budget {
	if l.budgets == nil {
		return nil
	}
	return &l.budgets[c.fd]
}

// startBudget opens the budget of c, just registered.
func (l *loop) startBudget(c *conn) {
	if l.e.cfg.Bandwidth == nil {
		return
	}
	if len(l.budgets) < len(l.conns) {
		grown := make([]budget, len(l.conns))
		copy(grown, l.budgets)
		l.budgets = grown
	}
	l.budgets[c.fd] = budget{flow: l.e.cfg.Bandwidth.Open(l.clock(), c.remote.addrPort().Addr())}
}

// endBudget closes c's budget, if it has one.
func (l *loop) endBudget(c *conn) {
	if int(c.fd) < len(l.budgets) && l.conns[c.fd] == nil {
		l.budgets[c.fd].flow.Close()
		l.budgets[c.fd] = budget{}
	}
}

// spent charges n bytes about to be sent on c to its budget b, and
// reports whether they take c past it: then c is paused, and the caller
// holds them (hold).
func (l *loop) spent(c *conn, b *budget, n int) bool {
	wait := b.flow.Spend(l.clock(), n)
	if wait <= 0 {
		return false
	}
	b.resumeAt = max(l.now+int64(wait), 1)
	l.paused = pushPaused(l.paused, pausedConn{at: b.resumeAt, c: c})
	return true
}

// hold keeps p as c's tail, to be sent when c resumes, and watches c for
// nothing meanwhile.
func (l *loop) hold(c *conn, p []byte) {
	c.tail, c.tailOff = l.tails.get(len(p)), 0
	copy(c.tail, p)
	l.watch(c, 0)
}

// resumePaused watches again the paused connections whose time has come,
// and returns how long until the next one's does (-1: none is paused).
func (l *loop) resumePaused() time.Duration {
	for len(l.paused) > 0 {
		p := l.paused[0]
		if l.conns[p.c.fd] != p.c || l.budgets[p.c.fd].resumeAt != p.at {
			// Closed since, or paused again for longer.
			l.paused = popPaused(l.paused)
			continue
		}
		if p.at > l.now {
			return time.Duration(p.at - l.now)
		}
		l.paused = popPaused(l.paused)
		l.budgets[p.c.fd].resumeAt = 0
		if p.c.tail != nil {
			l.watch(p.c, unix.EPOLLOUT)
		} else {
			l.watch(p.c, unix.EPOLLIN)
		}
	}
	return -1
}

// pushPaused and popPaused keep h a min-heap by time, without allocating
// once h has grown.
func pushPaused(h []pausedConn, p pausedConn) []pausedConn {
	h = append(h, p)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent].at <= h[i].at {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
	return h
}

func popPaused(h []pausedConn) []pausedConn {
	last := len(h) - 1
	h[0] = h[last]
	h[last] = pausedConn{}
	h = h[:last]
	for i := 0; ; {
		small, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].at < h[small].at {
			small = l
		}
		if r < len(h) && h[r].at < h[small].at {
			small = r
		}
		if small == i {
			return h
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}
