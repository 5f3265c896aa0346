//go:build linux

package epoll

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

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

	sweepEvery int64 // nanoseconds between sweeps; 0: none

	conns  []*conn // by descriptor; nil where the loop has none
	buf    []byte  // shared read buffer
	pipe   [2]int  // shared pipe for splicing bulk streams (read end, write end); -1s: none
	tails  tailPool
	events [maxEvents]unix.EpollEvent

	listeners []*loopListener
	paused    []pausedConn        // waiting for their bandwidth budget: a min-heap by time
	rsa       unix.RawSockaddrAny // accept4's scratch space

	mu     sync.Mutex
	ops    []listenerOp
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

// command queues a change to the listeners the loop watches; a loop that
// has ended lets go at once of a listener it is asked to add.
func (l *loop) command(op listenerOp) {
	l.mu.Lock()
	if l.exited {
		l.mu.Unlock()
		if op.add {
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
	l.sweepEvery = int64(l.e.sweepInterval())
	for {
		timeout := time.Duration(-1)
		if l.sweepEvery > 0 {
			timeout = time.Duration(l.sweepEvery)
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
			l.closeEverything(Failed, fmt.Errorf("epoll_wait: %w", err))
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
		if l.sweepEvery > 0 && l.now >= nextSweep {
			l.sweep()
			nextSweep = l.now + l.sweepEvery
		}
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
		l.applyListenerOp(op)
	}
	if l.e.closeAll.Load() {
		l.closeEverything(Closed, nil)
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
		l.applyListenerOp(op)
	}
	for len(l.listeners) > 0 {
		l.dropListener(len(l.listeners) - 1)
	}
	l.closeEverything(Closed, nil)
}

func (l *loop) closeEverything(r End, err error) {
	for _, c := range l.conns {
		if c != nil {
			l.close(c, r, err)
		}
	}
}

func (l *loop) register(c *conn) {
	c.start = l.now
	c.last = l.now
	fd := int(c.fd)
	if l.e.closeAll.Load() {
		l.report(c, Closed, nil)
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: c.fd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.report(c, Failed, fmt.Errorf("epoll_ctl add: %w", err))
		return
	}
	if fd >= len(l.conns) {
		grown := make([]*conn, max(2*len(l.conns), fd+1, 64))
		copy(grown, l.conns)
		l.conns = grown
	}
	l.conns[fd] = c
}

// close closes c's descriptor, forgets it and reports its end.
func (l *loop) close(c *conn, r End, err error) {
	l.conns[c.fd] = nil
	if c.tail != nil {
		l.tails.put(c.tail)
		c.tail = nil
	}
	l.report(c, r, err)
}

// report closes c's descriptor and tells the engine's owner c has ended.
func (l *loop) report(c *conn, r End, err error) {
	closeFD(int(c.fd))
	c.flow.Close()
	l.e.cfg.OnClose(Ended{Remote: c.remote, In: c.in, Out: c.out,
		Duration: time.Duration(l.now - c.start), End: r, Err: err})
}

// sweep closes the connections past a time limit.
func (l *loop) sweep() {
	idle, life := int64(l.e.cfg.IdleTimeout), int64(l.e.cfg.MaxDuration)
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		if life > 0 && l.now-c.start >= life {
			l.close(c, MaxDuration, nil)
			continue
		}
		limit, r := idle, IdleTimeout
		if c.draining {
			limit, r = int64(l.e.cfg.Linger), MaxBytes
		}
		if limit <= 0 {
			continue
		}
		if c.unsent != 0 && l.now-c.last >= l.sweepEvery {
			l.checkUnsent(c)
		}
		if l.now-c.last >= limit {
			l.close(c, r, nil)
		}
	}
}

// checkUnsent records as progress echo the client has taken off c's send
// buffer since the last sweep (SIOCOUTQ; after a write, a new baseline).
// The loop may write again only once much of a full send buffer drained,
// which takes a steady 1 MB/s reader seconds: idle, by the writes alone.
func (l *loop) checkUnsent(c *conn) {
	q, err := unix.IoctlGetInt(int(c.fd), unix.SIOCOUTQ)
	if err != nil {
		c.unsent = 0
		return
	}
	if c.unsent > 0 && int32(q) < c.unsent {
		c.last = l.now
	}
	c.unsent = int32(q)
}

// sweepInterval is how often loops look for connections past a time limit:
// a sixteenth of the shortest, at most a second, so progress is seen and a
// limit enforced each at most that late: an eighth in all. Zero: no limits.
func (e *Engine) sweepInterval() time.Duration {
	shortest := time.Duration(0)
	limits := []time.Duration{e.cfg.IdleTimeout, e.cfg.MaxDuration}
	if e.cfg.MaxBytes > 0 {
		limits = append(limits, e.cfg.Linger)
	}
	for _, d := range limits {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/16, time.Millisecond), time.Second)
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
