//go:build linux

package epoll

import (
	"errors"
	"net/netip"
	"unsafe"

	"github.com/echod/echod/echo/internal/session"
	"golang.org/x/sys/unix"
)

// conn is one connection's state: 112 bytes while idle, its fields ordered
// and its address packed to stay in that allocation class.
type conn struct {
	fd      int32
	tailOff int32  // start of the unsent part of tail
	tail    []byte // unsent output (from tailOff); nil when everything was sent
	st      session.State
	proc    Processor // nil: echo
	remote  addr
	bulk    bool // the last read was large: echo through the loop's pipe
	// endAfter says the processor asked to end once its output is sent.
	endAfter bool
	// shut says the write side is shut down: the session is finishing
	// and everything was sent, so its input is thrown away (discard).
	shut bool
	// goodbyeWaits says the policy ended the session while its
	// processor was busy with a message: it is served on, past a byte
	// cap too, and says goodbye once the message has ended.
	goodbyeWaits bool
}

// addr is a connection's remote address in 19 bytes rather than
// netip.AddrPort's 32 (a zone is dropped): what an idle connection costs is
// the engine's memory.
type addr struct {
	ip   [16]byte
	port uint16
	v4   bool
}

func packAddr(ap netip.AddrPort) addr {
	a := ap.Addr()
	return addr{ip: a.As16(), port: ap.Port(), v4: a.Is4()}
}

func (a addr) addrPort() netip.AddrPort {
	ip := netip.AddrFrom16(a.ip)
	if a.v4 {
		ip = ip.Unmap()
	}
	return netip.AddrPortFrom(ip, a.port)
}

// Processor turns a connection's input into its output: echo.Processor,
// as the loop calls it. Stop is told the policy's end; Quiet is asked
// after each Process; Busy before a goodbye; Ended is called once the
// connection is closed.
type Processor interface {
	Process(out, in []byte) ([]byte, bool)
	Stop(out []byte, why session.End) []byte
	Quiet() bool
	Busy() bool
	Ended()
}

// handle reacts to the events epoll reported for c. While c has a tail it
// is watched for writability only, and not read: the backpressure a client
// that does not read its echo meets.
func (l *loop) handle(c *conn, events uint32) {
	b := l.budget(c)
	if b != nil && b.resumeAt != 0 {
		// Paused, so watched for nothing: only a reset or hang-up.
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.close(c, session.Reset, nil)
		}
		return
	}
	if c.tail != nil {
		l.flush(c, events)
		return
	}
	if c.shut {
		l.discard(c, events)
		return
	}
	// One read per wakeup keeps the loop fair: a busy connection cannot
	// starve the others, and level-triggered epoll reports it again.
	buf := l.buf
	if b != nil {
		// About what may be sent now: see pace.go.
		buf = buf[:min(len(buf), b.flow.Allow(l.clock()))]
	}
	if !c.goodbyeWaits {
		buf = buf[:l.e.policy.ReadLimit(&c.st, len(buf))]
	}
	if c.bulk && c.proc == nil && l.pipe[0] >= 0 {
		l.spliceEcho(c, len(buf), events)
		return
	}
	n, err := read(int(c.fd), buf)
	if n == 0 {
		l.readNothing(c, err, events)
		return
	}
	last := c.st.Last()
	l.received(c, n)
	l.serve(c, buf[:n], last)
}

// serve writes back what was read, or what c's processor makes of it, and
// finishes c once that is sent if the policy or the processor says so.
// last is when c made progress before data was read.
func (l *loop) serve(c *conn, data []byte, last int64) {
	out := data
	quiet := false
	if c.proc != nil {
		var end bool
		out, end = c.proc.Process(l.scratch[:0], data)
		l.scratch = out[:0]
		c.endAfter = c.endAfter || end
		quiet = c.proc.Quiet()
	}
	if b := l.budget(c); b != nil && len(out) > 0 && l.spent(c, b, len(out)) {
		l.hold(c, out)
		return
	}
	if len(out) > 0 && !l.write(c, out) {
		return
	}
	if quiet {
		l.e.policy.Quiet(&c.st, last)
	}
	if c.tail == nil {
		l.sentAll(c)
	}
}

// sentAll is called when c has no output pending: it finishes c if it is
// at its byte cap or its processor asked, and shuts its write side down if
// it is finishing.
func (l *loop) sentAll(c *conn) {
	if c.goodbyeWaits && !c.proc.Busy() {
		c.goodbyeWaits = false
		l.goodbye(c) // which comes back here
		return
	}
	p := l.e.policy
	switch {
	case c.endAfter:
		l.finish(c, session.Done)
	case p.AtCap(&c.st):
		l.finish(c, session.MaxBytes)
		if c.proc != nil {
			l.goodbye(c) // which comes back here to shut the write side
			return
		}
	}
	if c.st.Finishing() && !c.shut && !c.goodbyeWaits {
		l.shutWrite(c)
	}
}

// finish starts the end of c for why.
func (l *loop) finish(c *conn, why session.End) {
	if !c.st.Finishing() {
		l.e.policy.Finish(&c.st, why, l.now)
		l.finishing++
	}
}

// goodbye writes the last message of c's processor, for an end the
// policy decided (already finishing): c ends as after its byte cap. While
// the processor is busy with a message (and the end is not the idle
// timeout, which a stalled message is), the goodbye waits for its end.
func (l *loop) goodbye(c *conn) {
	if c.st.Ending() != session.IdleTimeout && c.proc.Busy() {
		c.goodbyeWaits = true
		return
	}
	out := c.proc.Stop(l.scratch[:0], c.st.Ending())
	l.scratch = out[:0]
	if c.tail != nil {
		// After what is pending: one tail with both.
		rest := c.tail[c.tailOff:]
		t := l.tails.get(len(rest) + len(out))
		copy(t[copy(t, rest):], out)
		l.tails.put(c.tail)
		c.tail, c.tailOff = t, 0
		return
	}
	if len(out) > 0 && !l.write(c, out) {
		return
	}
	if c.tail == nil {
		l.sentAll(c)
	}
}

// readNothing handles a read of c that returned no bytes.
func (l *loop) readNothing(c *conn, err error, events uint32) {
	switch {
	case err == nil:
		// EOF: everything the client sent has been written back (with a
		// tail, c would not be read), so closing loses nothing.
		l.close(c, session.EOF, nil)
	case err == unix.EAGAIN || err == unix.EINTR:
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.close(c, session.Reset, nil)
		}
	default:
		l.closeErr(c, err)
	}
}

// write writes p to c; what the socket does not take now becomes c's tail.
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
// again, or finished.
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
				l.close(c, session.Reset, nil)
			}
			return
		default:
			l.closeErr(c, err)
			return
		}
	}
	l.tails.put(c.tail)
	c.tail = nil
	if l.watch(c, unix.EPOLLIN) {
		l.sentAll(c)
	}
}

// shutWrite shuts down c's write side, as echo's discardAfterLimit does:
// the client reads EOF after everything, and c's input is thrown away
// (discard) until the client closes its side, or the policy's linger
// passes. c must be watched for readability.
func (l *loop) shutWrite(c *conn) {
	if err := unix.Shutdown(int(c.fd), unix.SHUT_WR); err != nil {
		l.closeErr(c, err)
		return
	}
	c.shut = true
}

// discard reads and throws away the input of a finishing connection, whose
// end, however it comes, is the policy's.
func (l *loop) discard(c *conn, events uint32) {
	n, err := read(int(c.fd), l.buf)
	switch {
	case n > 0:
	case err == unix.EAGAIN || err == unix.EINTR:
		if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			l.close(c, session.Reset, nil)
		}
	case err == nil:
		l.close(c, session.EOF, nil)
	default:
		l.closeErr(c, err)
	}
}

// received and sent are the one place where bytes moved on c are counted.
func (l *loop) received(c *conn, n int) {
	l.e.policy.Read(&c.st, n, l.now)
	l.e.cfg.BytesIn.Add(uint64(n))
	c.bulk = n >= bulkSize
}

func (l *loop) sent(c *conn, n int) {
	l.e.policy.Wrote(&c.st, n, l.now)
	l.e.cfg.BytesOut.Add(uint64(n))
}

// watch changes the events epoll reports for c, closing c if it cannot.
func (l *loop) watch(c *conn, events uint32) bool {
	ev := unix.EpollEvent{Events: events, Fd: c.fd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev); err != nil {
		l.close(c, session.Failed, err)
		return false
	}
	return true
}

// closeErr closes c after a read or write error.
func (l *loop) closeErr(c *conn, err error) {
	if errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ETIMEDOUT) {
		l.close(c, session.Reset, nil)
		return
	}
	l.close(c, session.Failed, err)
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
// a tail is what is left of one read (or of a processor's output, which
// may be more: get allocates it exactly).
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
	if n > size {
		// A processor's output may outgrow a read: kept only while sent.
		return make([]byte, n)
	}
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
