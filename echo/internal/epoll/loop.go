//go:build linux

package epoll

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/echod/echod/echo/internal/session"
	"golang.org/x/sys/unix"
)

const (
	// readSize is the loop's shared read buffer: the most one connection
	// reads per wakeup, which keeps the loop fair to the others.
	readSize = 64 << 10
	// maxEvents is how many ready connections one epoll_wait reports.
	maxEvents = 256
	// yieldEvery is how long a busy loop runs before it yields.
	yieldEvery = int64(2 * time.Millisecond)
)

// loop is one event loop: an epoll instance, the listeners and connections
// it watches, and an inbox of commands from other goroutines.
type loop struct {
	e      *Engine
	epfd   int
	wakefd int // eventfd: a write wakes the loop to read its inbox
	now    int64

	// Nanoseconds between sweeps (0: none), while no connection is
	// finishing and while some are; finishing counts them.
	sweepPlain, sweepFinishing int64
	finishing                  int
	saidGoodbye                bool // Engine.SayGoodbye was carried out

	ended   []Ended // this turn's ends to hand to the owner after it
	scratch []byte  // processors' output, reused

	conns  []*conn // by descriptor; nil where the loop has none
	buf    []byte  // shared read buffer
	pipe   [2]int  // shared pipe for splicing bulk streams (read end, write end); -1s: none
	tails  tailPool
	events [maxEvents]unix.EpollEvent

	listeners []*loopListener
	budgets   []budget            // by descriptor, with Config.Bandwidth only: see pace.go
	paused    []pausedConn        // waiting for their bandwidth budget: a min-heap by time
	rsa       unix.RawSockaddrAny // accept4's scratch space

	mu     sync.Mutex
	ops    []op
	woken  bool // a wakeup is pending; later commands need not write again
	exited bool // the loop has ended; command refuses
}

func newLoop(e *Engine) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, fmt.Errorf("epoll_ctl add eventfd: %w", err)
	}
	return &loop{e: e, epfd: epfd, wakefd: wakefd, buf: make([]byte, readSize), pipe: newPipe()}, nil
}

// free closes the loop's own descriptors once its goroutine has ended.
func (l *loop) free() {
	if l.pipe[0] >= 0 {
		unix.Close(l.pipe[0])
		unix.Close(l.pipe[1])
	}
	unix.Close(l.wakefd)
	unix.Close(l.epfd)
}

// op is a command to a loop from another goroutine: a change to the
// listeners it watches, or a connection to adopt.
type op struct {
	ln       *Listener
	add      bool
	conn     *conn // to adopt, with buffered
	buffered []byte
}

// command queues op for the loop; a loop that has ended lets go at once of
// a listener it is asked to add, and closes a connection.
func (l *loop) command(op op) {
	l.mu.Lock()
	if l.exited {
		l.mu.Unlock()
		switch {
		case op.conn != nil:
			closeFD(int(op.conn.fd))
			if end := (Ended{Remote: op.conn.remote.addrPort(), End: session.Closed}); l.e.cfg.Closed(end) {
				l.e.ends.hand([]Ended{end})
			}
		case op.add:
			op.ln.release()
		}
		return
	}
	l.ops = append(l.ops, op)
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *loop) wake() {
	l.mu.Lock()
	l.wakeLocked()
	l.mu.Unlock()
}

func (l *loop) wakeLocked() {
	if l.woken {
		return
	}
	l.woken = true
	one := [8]byte{1}
	// EAGAIN means the counter is already non-zero: the loop will wake.
	unix.Write(l.wakefd, one[:])
}

// run is the loop's goroutine.
func (l *loop) run() {
	var nextSweep, lastYield int64
	l.sweepPlain = int64(l.e.policy.SweepEvery(false))
	l.sweepFinishing = int64(l.e.policy.SweepEvery(true))
	for {
		every := l.sweepPlain
		if l.finishing > 0 {
			every = l.sweepFinishing
		}
		timeout := time.Duration(-1)
		if every > 0 {
			timeout = time.Duration(every)
			if nextSweep > l.now {
				timeout = time.Duration(nextSweep - l.now)
			}
		}
		if resume := l.resumeListeners(); resume >= 0 && (timeout < 0 || resume < timeout) {
			timeout = resume
		}
		if resume := l.resumePaused(); resume >= 0 && (timeout < 0 || resume < timeout) {
			timeout = resume
		}
		ms := -1
		if timeout >= 0 {
			ms = int(max((timeout+time.Millisecond-1)/time.Millisecond, 1))
		}
		n, err := l.wait(ms)
		if now := l.e.now(); now-lastYield > yieldEvery {
			// A busy loop never blocks, so the runtime would preempt it
			// every 10 ms and keep its monitor polling; yielding costs
			// less, and shares the processor.
			runtime.Gosched()
			lastYield = now
		}
		// After the yield: the idle timeout counts from this.
		l.now = l.e.now()
		if err != nil && !errors.Is(err, unix.EINTR) {
			// Only a bug (a bad epfd) gets here.
			l.closeEverything(session.Failed, fmt.Errorf("epoll_wait: %w", err))
			l.exit()
			return
		}
		for i := range n {
			ev := &l.events[i]
			if int(ev.Fd) == l.wakefd {
				if l.readInbox() {
					return
				}
				continue
			}
			if ev.Pad == listenerTag {
				if i, ll := l.listenerFor(ev.Fd); ll != nil {
					l.accept(i, ll)
				}
				continue
			}
			if fd := int(ev.Fd); fd < len(l.conns) && l.conns[fd] != nil {
				l.handle(l.conns[fd], ev.Events)
			}
		}
		if every > 0 && l.now >= nextSweep {
			l.sweep(every)
			nextSweep = l.now + every
		}
		l.handEnds()
	}
}

// handEnds gives this turn's ends that the owner asked for to it: the loop
// never logs them itself, and never waits for whoever does.
func (l *loop) handEnds() {
	if len(l.ended) > 0 {
		l.e.ends.hand(l.ended)
		clear(l.ended)
		l.ended = l.ended[:0]
	}
}

// wait returns the ready events. Under load a non-blocking poll that the
// scheduler never hears of finds some; only an idle loop blocks, in a
// system call the scheduler knows of, so its processor runs other work.
func (l *loop) wait(timeout int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
	if errno == 0 && n > 0 {
		return int(n), nil
	}
	return unix.EpollWait(l.epfd, l.events[:], timeout)
}

// readInbox carries out the queued commands, and reports whether the loop
// has ended.
func (l *loop) readInbox() bool {
	var b [8]byte
	unix.Read(l.wakefd, b[:])

	l.mu.Lock()
	ops := l.ops
	l.ops = nil
	l.woken = false
	l.mu.Unlock()

	for _, op := range ops {
		l.apply(op)
	}
	if l.e.closeAll.Load() {
		l.closeEverything(session.Closed, nil)
	}
	if l.e.goodbye.Load() && !l.saidGoodbye {
		l.saidGoodbye = true
		for _, c := range l.conns {
			if c != nil && c.proc != nil && !c.st.Finishing() {
				l.finish(c, session.Closed)
				l.goodbye(c)
			}
		}
	}
	if l.e.stopped.Load() {
		l.exit()
		return true
	}
	return false
}

// exit refuses further commands and lets go of every listener and
// connection.
func (l *loop) exit() {
	l.mu.Lock()
	l.exited = true
	ops := l.ops
	l.ops = nil
	l.mu.Unlock()
	for _, op := range ops {
		l.apply(op)
	}
	for len(l.listeners) > 0 {
		l.dropListener(len(l.listeners) - 1)
	}
	l.closeEverything(session.Closed, nil)
	l.handEnds()
}

// apply carries out a command.
func (l *loop) apply(op op) {
	if op.conn != nil {
		l.adopt(op.conn, op.buffered)
		return
	}
	l.applyListenerOp(op)
}

// adopt serves c, prepared on another goroutine, starting with what was
// read of it already.
func (l *loop) adopt(c *conn, buffered []byte) {
	fd := int(c.fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		c.st = l.e.policy.Start(l.now)
		l.report(c, session.Failed, fmt.Errorf("adopt: %w", err))
		return
	}
	setNoDelay(fd)
	if !l.register(c) {
		return
	}
	if n := l.e.policy.ReadLimit(&c.st, len(buffered)); n > 0 {
		last := c.st.Last()
		l.received(c, n)
		l.serve(c, buffered[:n], last)
	}
}

func (l *loop) closeEverything(r session.End, err error) {
	for _, c := range l.conns {
		if c != nil {
			l.close(c, r, err)
		}
	}
}

// register starts serving c, and reports whether it did.
func (l *loop) register(c *conn) bool {
	c.st = l.e.policy.Start(l.now)
	fd := int(c.fd)
	if l.e.closeAll.Load() {
		l.report(c, session.Closed, nil)
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: c.fd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.report(c, session.Failed, fmt.Errorf("epoll_ctl add: %w", err))
		return false
	}
	if fd >= len(l.conns) {
		grown := make([]*conn, max(2*len(l.conns), fd+1, 64))
		copy(grown, l.conns)
		l.conns = grown
	}
	l.conns[fd] = c
	l.startBudget(c)
	return true
}

// close closes c's descriptor, forgets it and reports its end; io is how
// its I/O ended (session.Open: the policy ended it).
func (l *loop) close(c *conn, io session.End, err error) {
	l.conns[c.fd] = nil
	if c.tail != nil {
		l.tails.put(c.tail)
		c.tail = nil
	}
	l.report(c, io, err)
}

// report closes c's descriptor and queues its end for the engine's owner,
// with the reason the policy gives it.
func (l *loop) report(c *conn, io session.End, err error) {
	closeFD(int(c.fd))
	l.endBudget(c)
	if c.proc != nil {
		c.proc.Ended()
	}
	if c.st.Finishing() {
		l.finishing--
	}
	end := l.e.policy.Ended(&c.st, io)
	if end != session.Failed {
		err = nil
	}
	e := Ended{Remote: c.remote.addrPort(), In: c.st.In(), Out: c.st.Out(),
		Duration: c.st.Duration(l.now), End: end, Err: err}
	if l.e.cfg.Closed(e) {
		l.ended = append(l.ended, e)
	}
}

// sweep applies the time limits to every connection, every nanoseconds
// after the last sweep.
func (l *loop) sweep(every int64) {
	p := l.e.policy
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		if p.WantUnsent(&c.st, l.now, time.Duration(every)) {
			l.checkUnsent(c)
		}
		switch p.Due(&c.st, l.now, c.proc != nil) {
		case session.Close:
			l.close(c, session.Open, nil)
		case session.Stop:
			l.finishing++ // Due started the end
			l.goodbye(c)
		}
	}
}

// checkUnsent tells the policy how much of c's output the client has not
// taken off the send buffer (SIOCOUTQ): a slow reader's progress. The loop
// may write again only once much of a full send buffer drained, which
// takes a steady 1 MB/s reader seconds: idle, by the writes alone.
func (l *loop) checkUnsent(c *conn) {
	q, err := unix.IoctlGetInt(int(c.fd), unix.SIOCOUTQ)
	if err != nil {
		q = 0
	}
	l.e.policy.Unsent(&c.st, q, l.now)
}

// closeFD closes a socket. Without SO_LINGER that never blocks, so the
// scheduler need not hear of it (see read). Linux closes the descriptor
// even on EINTR, so it is never retried.
func closeFD(fd int) {
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
}

// resetFD closes a socket with a reset rather than a FIN.
func resetFD(fd int) {
	linger := unix.Linger{Onoff: 1, Linger: 0}
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_LINGER,
		uintptr(unsafe.Pointer(&linger)), unsafe.Sizeof(linger), 0)
	closeFD(fd)
}

// setNoDelay turns off Nagle's algorithm, which would hold small echoes
// back, as net does.
func setNoDelay(fd int) {
	one := int32(1)
	unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY,
		uintptr(unsafe.Pointer(&one)), 4, 0)
}
