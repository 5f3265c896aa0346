package bench

import (
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/echod/echod/internal/mmsg"
)

// udpBatchMax is the most datagrams one recvmmsg or sendmmsg moves. The
// load generator must not be what limits a batching server, so it batches
// too.
const udpBatchMax = 16

// udpIO moves datagrams on a connected UDP socket, on Linux up to
// udpBatchMax per system call: read takes what has arrived, write queues
// and flush sends what was queued.
type udpIO struct {
	rc   syscall.RawConn
	size int // the datagram size sent; echoes longer than this are truncated, and say so

	in    []mmsg.Hdr
	inIov []unix.Iovec
	bufs  []byte

	out    []mmsg.Hdr
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
		in: make([]mmsg.Hdr, n), inIov: make([]unix.Iovec, n), bufs: make([]byte, n*slot),
		out: make([]mmsg.Hdr, n), outIov: make([]unix.Iovec, n),
	}
	for i := range n {
		u.inIov[i].Base = &u.bufs[i*slot]
		u.inIov[i].SetLen(slot)
		u.in[i].Hdr.Iov = &u.inIov[i]
		u.in[i].Hdr.SetIovlen(1)
		u.out[i].Hdr.Iov = &u.outIov[i]
		u.out[i].Hdr.SetIovlen(1)
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
	// MSG_TRUNC: each length is the datagram's own, even past the buffer.
	var done bool
	u.got, u.errno, done = mmsg.Recv(fd, u.in, unix.MSG_TRUNC)
	return done
}

// datagram returns the i-th echo read (at most size+1 bytes of it) and its
// length in full.
func (u *udpIO) datagram(i int) ([]byte, int) {
	slot := u.size + 1
	n := int(u.in[i].N)
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
	var done bool
	u.got, u.errno, done = mmsg.Send(fd, u.out[u.first:u.nOut], 0)
	return done
}
