//go:build linux

package epoll

import (
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/echod/echod/echo/internal/backoff"
	"golang.org/x/sys/unix"
)

// maxAccepts is how many connections a loop accepts per wakeup, so a flood
// cannot starve the ones it serves.
const maxAccepts = 32

// Listener is a listening socket that every loop watches: the kernel wakes
// one per connection (EPOLLEXCLUSIVE), which accepts and serves it, so
// nothing crosses goroutines between accept and echo.
type Listener struct {
	e      *Engine
	fd     int
	failed func(err error, backoff time.Duration) (retry bool)

	registered atomic.Int32 // loops that have not yet let go of fd
	done       chan struct{}
}

// Listen makes the loops accept on fd, a listening, non-blocking socket the
// engine owns from now on, and serve what Config.Admit admits. failed is
// called on a loop's goroutine when accept fails (not for a connection that
// died in the queue); it must not block, and reports whether the loop
// retries after the back-off, or lets go of the listener.
func (e *Engine) Listen(fd int, failed func(err error, backoff time.Duration) (retry bool)) (*Listener, error) {
	if e.stopped.Load() {
		closeFD(fd)
		return nil, ErrStopped
	}
	ln := &Listener{e: e, fd: fd, failed: failed, done: make(chan struct{})}
	ln.registered.Store(int32(len(e.loops)))
	for _, l := range e.loops {
		l.command(op{ln: ln, add: true})
	}
	return ln, nil
}

// Close stops accepting, and closes the socket once every loop has let go
// of it. It does not wait; Done is closed then.
func (ln *Listener) Close() {
	for _, l := range ln.e.loops {
		l.command(op{ln: ln})
	}
}

// Done is closed once the listener's socket is closed.
func (ln *Listener) Done() <-chan struct{} { return ln.done }

// release records that one loop has let go of the socket.
func (ln *Listener) release() {
	if ln.registered.Add(-1) == 0 {
		closeFD(ln.fd)
		close(ln.done)
	}
}

// loopListener is a loop's view of a Listener.
type loopListener struct {
	ln      *Listener
	backoff time.Duration
	until   int64 // engine clock at which a paused listener resumes; 0 if not paused
}

// listenerTag marks a listener's events (in the data word beside the
// descriptor), telling them apart from a connection's.
const listenerTag = 1

func (l *loop) applyListenerOp(op op) {
	if op.add {
		if err := l.watchListener(op.ln); err != nil {
			op.ln.failed(os.NewSyscallError("epoll_ctl", err), 0)
			op.ln.release()
			return
		}
		l.listeners = append(l.listeners, &loopListener{ln: op.ln})
		return
	}
	for i, ll := range l.listeners {
		if ll.ln == op.ln {
			l.dropListener(i)
			return
		}
	}
}

// watchListener adds ln to the loop's epoll instance, its events marked.
func (l *loop) watchListener(ln *Listener) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(ln.fd), Pad: listenerTag}
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, ln.fd, &ev)
}

// dropListener stops watching l.listeners[i] and lets go of it.
func (l *loop) dropListener(i int) {
	ll := l.listeners[i]
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ll.ln.fd, nil)
	l.listeners = append(l.listeners[:i], l.listeners[i+1:]...)
	ll.ln.release()
}

func (l *loop) listenerFor(fd int32) (int, *loopListener) {
	for i, ll := range l.listeners {
		if int32(ll.ln.fd) == fd {
			return i, ll
		}
	}
	return -1, nil
}

// accept takes up to maxAccepts connections from a ready listener and
// serves them in this loop.
func (l *loop) accept(i int, ll *loopListener) {
	ln := ll.ln
	for range maxAccepts {
		fd, remote, err := accept4(ln.fd, &l.rsa)
		switch err {
		case nil:
		case unix.EAGAIN:
			ll.backoff = 0
			return
		case unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
			continue
		default:
			ll.backoff = backoff.Next(ll.backoff)
			if !ln.failed(os.NewSyscallError("accept4", err), ll.backoff) {
				l.dropListener(i)
				return
			}
			// Level-triggered, a failing listener would wake the loop at
			// once: unwatch it for the back-off (removed, not modified,
			// which epoll refuses with EPOLLEXCLUSIVE).
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, ln.fd, nil)
			ll.until = l.now + int64(ll.backoff)
			return
		}
		setNoDelay(fd)
		if !l.e.cfg.Admit(remote) {
			resetFD(fd)
			continue
		}
		l.register(&conn{fd: int32(fd), remote: packAddr(remote)})
	}
}

// resumeListeners watches again the listeners whose back-off has ended,
// and returns how long until the next one does (-1: none is paused).
func (l *loop) resumeListeners() time.Duration {
	next := time.Duration(-1)
	for _, ll := range l.listeners {
		if ll.until == 0 {
			continue
		}
		if left := time.Duration(ll.until - l.now); left > 0 {
			if next < 0 || left < next {
				next = left
			}
			continue
		}
		ll.until = 0
		if err := l.watchListener(ll.ln); err != nil {
			// Try again after another back-off.
			ll.backoff = backoff.Next(ll.backoff)
			ll.until = l.now + int64(ll.backoff)
		}
	}
	return next
}

// accept4 accepts one connection, non-blocking, its address decoded from
// rsa, scratch space that keeps the call free of allocations.
func accept4(lfd int, rsa *unix.RawSockaddrAny) (int, netip.AddrPort, error) {
	size := uint32(unix.SizeofSockaddrAny)
	fd, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(lfd),
		uintptr(unsafe.Pointer(rsa)), uintptr(unsafe.Pointer(&size)),
		unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(fd), rawAddrPort(rsa), nil
}

// rawAddrPort decodes the address accept4 wrote.
func rawAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), networkPort(sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), networkPort(sa.Port))
	}
	return netip.AddrPort{}
}

// networkPort reads a port stored in network byte order.
func networkPort(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}
