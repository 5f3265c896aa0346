//go:build linux

package epoll

import (
	"errors"

	"github.com/echod/echod/echo/internal/session"
	"golang.org/x/sys/unix"
)

// bulkSize is the read from which a connection counts as a bulk stream and
// is echoed with splice(2) through its loop's pipe, without copying the
// bytes into the loop's buffer and back. Small messages take read and
// write, which cost less per call.
const bulkSize = 16 << 10

// newPipe makes a loop's pipe for splicing, or returns -1s if it cannot.
func newPipe() [2]int {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return [2]int{-1, -1}
	}
	// One read's worth, so a splice in is never cut short by the pipe.
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, readSize); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return [2]int{-1, -1}
	}
	return p
}

// spliceEcho is handle's read and write for a bulk stream: up to limit
// bytes from the socket into the pipe and back. What the socket does not
// take is moved into c's tail, so the pipe is empty again for the next.
func (l *loop) spliceEcho(c *conn, limit int, events uint32) {
	n, err := splice(int(c.fd), l.pipe[1], limit)
	if n == 0 {
		l.readNothing(c, err, events)
		return
	}
	l.received(c, n)
	if b := l.budget(c); b != nil && l.spent(c, b, n) {
		// Over its budget: the echo waits in c's tail.
		c.tail, c.tailOff = l.tails.get(n), 0
		if !l.drainPipe(c.tail) {
			l.close(c, session.Failed, errPipe)
			return
		}
		l.watch(c, 0)
		return
	}
	left := n
	var werr error
	for left > 0 {
		m, err := splice(l.pipe[0], int(c.fd), left)
		if m > 0 {
			l.sent(c, m)
			left -= m
			continue
		}
		if err == unix.EINTR {
			continue
		}
		if err != unix.EAGAIN {
			werr = err
		}
		break
	}
	if left > 0 {
		// Closing c gives the tail back to the pool.
		c.tail, c.tailOff = l.tails.get(left), 0
		switch {
		case !l.drainPipe(c.tail):
			l.close(c, session.Failed, errPipe) // nothing can be echoed exactly now
		case werr != nil:
			l.closeErr(c, werr)
		default:
			l.watch(c, unix.EPOLLOUT)
		}
		return
	}
	l.sentAll(c)
}

// drainPipe reads exactly len(p) bytes out of the loop's pipe.
func (l *loop) drainPipe(p []byte) bool {
	for len(p) > 0 {
		n, err := read(l.pipe[0], p)
		if n > 0 {
			p = p[n:]
			continue
		}
		if err != unix.EINTR {
			return false
		}
	}
	return true
}

// splice moves up to n bytes from in to out without blocking on the pipe,
// without telling the scheduler (see read).
func splice(in, out, n int) (int, error) {
	m, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0,
		uintptr(n), unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
	if errno != 0 {
		return 0, errno
	}
	return int(m), nil
}

// errPipe says the loop's pipe lost track of the bytes in it.
var errPipe = errors.New("splice pipe out of step")
