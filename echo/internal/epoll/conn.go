//go:build linux

package epoll

import (
	"errors"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/echod/echod/bandwidth"
)

// conn is one connection's state: about a hundred bytes while idle.
type conn struct {
	fd      int32
	tailOff int32  // start of the unsent part of tail
	tail    []byte // unsent echo (from tailOff); nil when everything was sent
	in, out int64
	start   int64 // engine clock when added
	last    int64 // engine clock of the last read or write
	remote  netip.AddrPort
	// unsent is the socket's count of bytes the client has not taken, as
	// the sweep last saw it: -1 after a write (look again), 0 for none
	// (no need to look until the next write).
	unsent   int32
	bulk     bool // the last read was large: echo through the loop's pipe
	draining bool // the connection echoed MaxBytes: its input is thrown away; see endAtLimit
	// flow is its share of Config.Bandwidth (nil: none); while resumeAt
	// is set, it waits for its budget and is not read: see pace.go.
	flow     *bandwidth.Flow
	resumeAt int64
}

// handle reacts to the events epoll reported for c. While c has a tail it
// is watched for writability only, and not read: the backpressure a client
// that does not read its echo meets.
func (l *loop) handle(c *conn, events uint32) {
	if c.resumeAt != 0 {
		// Paused, so watched for nothing: only a reset or hang-up.
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.close(c, Reset, nil)
		}
		return
	}
	if c.tail != nil {
		l.flush(c, events)
		return
	}
	if c.draining {
		l.discard(c, events)
		return
	}
	// One read per wakeup keeps the loop fair: a busy connection cannot
	// starve the others, and level-triggered epoll reports it again.
	buf := l.buf
	if max := l.e.cfg.MaxBytes; max > 0 && int64(len(buf)) > max-c.in {
		buf = buf[:max-c.in]
	}
	if c.flow != nil {
		// Read about what may be sent now.
		buf = buf[:min(len(buf), c.flow.Allow(l.clock()))]
	}
	if c.bulk && l.pipe[0] >= 0 {
		l.spliceEcho(c, len(buf), events)
		return
	}
	n, err := read(int(c.fd), buf)
	if n == 0 {
		l.readNothing(c, err, events)
		return
	}
	l.received(c, n)
	if c.resumeAt != 0 {
		l.hold(c, buf[:n])
		return
	}
	if l.write(c, buf[:n]) && c.tail == nil && l.atLimit(c) {
		l.endAtLimit(c)
	}
}

// readNothing handles a read of c that returned no bytes.
func (l *loop) readNothing(c *conn, err error, events uint32) {
	switch {
	case err == nil:
		// EOF: everything the client sent has been written back (with a
		// tail, c would not be read), so closing loses nothing.
		l.close(c, EOF, nil)
	case err == unix.EAGAIN || err == unix.EINTR:
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.close(c, Reset, nil)
		}
	default:
		l.closeErr(c, err)
	}
}

// atLimit reports whether c has echoed Config.MaxBytes.
func (l *loop) atLimit(c *conn) bool {
	return l.e.cfg.MaxBytes > 0 && c.in >= l.e.cfg.MaxBytes
}

// write echoes p to c; what the socket does not take now becomes c's tail.
// It reports whether c is still open.
func (l *loop) write(c *conn, p []byte) bool {
	for {
		n, err := write(int(c.fd), p)
		if n > 0 {
			l.sent(c, n)
			p = p[n:]
		}
		switch {
		case len(p) == 0:
			return true
		case err == unix.EINTR:
			continue
		case err == nil || err == unix.EAGAIN:
			c.tail = l.tails.get(len(p))
			copy(c.tail, p)
			c.tailOff = 0
			return l.watch(c, unix.EPOLLOUT)
		default:
			l.closeErr(c, err)
			return false
		}
	}
}

// flush writes what it can of c's tail; once the tail is gone, c is read
// again, or closed if it had reached its byte limit.
func (l *loop) flush(c *conn, events uint32) {
	p := c.tail[c.tailOff:]
	for len(p) > 0 {
		n, err := write(int(c.fd), p)
		if n > 0 {
			l.sent(c, n)
			p = p[n:]
			c.tailOff += int32(n)
			continue
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN, nil:
			if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
				l.close(c, Reset, nil)
			}
			return
		default:
			l.closeErr(c, err)
			return
		}
	}
	l.tails.put(c.tail)
	c.tail = nil
	if l.watch(c, readEvents(c)) && l.atLimit(c) {
		l.endAtLimit(c)
	}
}

// endAtLimit ends c, which has echoed MaxBytes, as echo's discardAfterLimit
// does: its write side is shut down, and its input thrown away (discard)
// until the client closes its side, or takes no echo for Config.Linger. c
// must be watched for readability.
func (l *loop) endAtLimit(c *conn) {
	if err := unix.Shutdown(int(c.fd), unix.SHUT_WR); err != nil {
		l.closeErr(c, err)
		return
	}
	c.draining = true
	c.last = l.now
	c.unsent = -1
}

// discard reads and throws away the input of a connection past its byte
// limit, whose end, however it comes, is the limit's.
func (l *loop) discard(c *conn, events uint32) {
	n, err := read(int(c.fd), l.buf)
	switch {
	case n > 0:
	case err == unix.EAGAIN || err == unix.EINTR:
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.close(c, MaxBytes, nil)
		}
	default:
		l.close(c, MaxBytes, nil)
	}
}

// received and sent are the one place where bytes moved on c are counted.
func (l *loop) received(c *conn, n int) {
	c.in += int64(n)
	l.e.cfg.BytesIn.Add(uint64(n))
	c.last = l.now
	c.bulk = n >= bulkSize
	if c.flow != nil {
		l.spent(c, n)
	}
}

func (l *loop) sent(c *conn, n int) {
	c.out += int64(n)
	l.e.cfg.BytesOut.Add(uint64(n))
	c.last = l.now
	c.unsent = -1 // the sweep's count is out of date
}

// watch changes the events epoll reports for c, closing c if it cannot.
func (l *loop) watch(c *conn, events uint32) bool {
	ev := unix.EpollEvent{Events: events, Fd: c.fd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev); err != nil {
		l.close(c, Failed, err)
		return false
	}
	return true
}

// closeErr closes c after a read or write error.
func (l *loop) closeErr(c *conn, err error) {
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ETIMEDOUT) {
		l.close(c, Reset, nil)
		return
	}
	l.close(c, Failed, err)
}

// read and write are the plain system calls on a non-blocking socket, made
// without telling the scheduler (RawSyscall): they return at once, and a
// thread seen in a system call after every message would keep the runtime's
// monitor awake and hand the processor around for nothing.
func read(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func write(fd int, p []byte) (int, error) {
	n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// tailPool keeps one loop's spare tail buffers in three sizes, so a tail
// costs what it holds rounded up, and repeated backpressure does not
// allocate each time.
type tailPool struct {
	free [3][][]byte
}

const (
	tailSmall  = 4 << 10
	tailMedium = 16 << 10
	// maxSpare is how many buffers of each size a loop keeps for reuse.
	maxSpare = 16
)

// tailClass returns the pool class and buffer size for a tail of n bytes;
// a tail is what is left of one read, so never more than readSize.
func tailClass(n int) (class, size int) {
	switch {
	case n <= tailSmall:
		return 0, tailSmall
	case n <= tailMedium:
		return 1, tailMedium
	default:
		return 2, readSize
	}
}

func (p *tailPool) get(n int) []byte {
	class, size := tailClass(n)
	if k := len(p.free[class]); k > 0 {
		b := p.free[class][k-1]
		p.free[class] = p.free[class][:k-1]
		return b[:n]
	}
	return make([]byte, n, size)
}

func (p *tailPool) put(b []byte) {
	class, size := tailClass(cap(b))
	if cap(b) == size && len(p.free[class]) < maxSpare {
		p.free[class] = append(p.free[class], b)
	}
}
