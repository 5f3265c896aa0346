package bench

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatchMax is the most datagrams one recvmmsg or sendmmsg moves. The
// load generator must not be what limits a batching server, so it batches
// too.
const udpBatchMax = 16

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// udpIO moves datagrams on a connected UDP socket, on Linux up to
// udpBatchMax per system call: read takes what has arrived, write queues
// and flush sends what was queued.
type udpIO struct {
	rc   syscall.RawConn
	size int // the datagram size sent; echoes longer than this are truncated, and say so

	in    []mmsghdr
	inIov []unix.Iovec
	bufs  []byte

	out    []mmsghdr
	outIov []unix.Iovec
	nOut   int
	first  int // the next queued datagram flush sends

	got   int
	errno unix.Errno
	// Method values made once, not a closure per call.
	recvFn, sendFn func(fd uintptr) bool
}

func newUDPIO(c *net.UDPConn, size, depth int) (*udpIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	n := min(depth, udpBatchMax)
	// One byte more than was sent, so a longer echo shows as truncated.
	slot := size + 1
	u := &udpIO{
		rc: rc, size: size,
		in: make([]mmsghdr, n), inIov: make([]unix.Iovec, n), bufs: make([]byte, n*slot),
		out: make([]mmsghdr, n), outIov: make([]unix.Iovec, n),
	}
	for i := range n {
		u.inIov[i].Base = &u.bufs[i*slot]
		u.inIov[i].SetLen(slot)
		u.in[i].hdr.Iov = &u.inIov[i]
		u.in[i].hdr.SetIovlen(1)
		u.out[i].hdr.Iov = &u.outIov[i]
		u.out[i].hdr.SetIovlen(1)
	}
	u.recvFn, u.sendFn = u.recv, u.send
	return u, nil
}

// read waits for echoes (and the socket's read deadline) and returns how
// many it took.
func (u *udpIO) read() (int, error) {
	u.got, u.errno = 0, 0
	if err := u.rc.Read(u.recvFn); err != nil {
		return 0, err
	}
	if u.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", u.errno)
	}
	return u.got, nil
}

func (u *udpIO) recv(fd uintptr) bool {
	for {
		// MSG_TRUNC: each length is the datagram's own, even past the buffer.
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&u.in[0])), uintptr(len(u.in)), unix.MSG_TRUNC, 0, 0)
		runtime.KeepAlive(u)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		u.got, u.errno = int(r), e
		return true
	}
}

// datagram returns the i-th echo read (at most size+1 bytes of it) and its
// length in full.
func (u *udpIO) datagram(i int) ([]byte, int) {
	slot := u.size + 1
	n := int(u.in[i].n)
	return u.bufs[i*slot : i*slot+min(n, slot)], n
}

// write queues p, which must stay unchanged until flush, and sends the
// queue if it is full.
func (u *udpIO) write(p []byte) error {
	u.outIov[u.nOut].Base = unsafe.SliceData(p)
	u.outIov[u.nOut].SetLen(len(p))
	u.nOut++
	if u.nOut == len(u.out) {
		return u.flush()
	}
	return nil
}

// flush sends every queued datagram.
func (u *udpIO) flush() error {
	defer func() { u.nOut, u.first = 0, 0 }()
	for u.first < u.nOut {
		u.got, u.errno = 0, 0
		if err := u.rc.Write(u.sendFn); err != nil {
			return err
		}
		if u.errno != 0 {
			return os.NewSyscallError("sendmmsg", u.errno)
		}
		u.first += u.got
	}
	return nil
}

func (u *udpIO) send(fd uintptr) bool {
	for {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&u.out[u.first])), uintptr(u.nOut-u.first), 0, 0, 0)
		runtime.KeepAlive(u)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		u.got, u.errno = int(r), e
		return true
	}
}
