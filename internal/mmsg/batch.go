//go:build linux

package mmsg

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batch is one reader's buffers for a UDP socket: Read takes up to Slots
// datagrams with one recvmmsg, and Flush sends what Reply and Queue queued
// with as few sendmmsg calls as the kernel allows. Everything is allocated
// by NewBatch, so nothing is allocated per datagram. A Batch is not safe
// for concurrent use; each reader of a socket makes its own.
type Batch struct {
	rc       syscall.RawConn
	slotSize int
	control  int // bytes of control messages per slot; 0: none asked for

	in    []mmsghdr
	inIov []unix.Iovec
	// Each datagram's source, in the form the kernel gives and sendmmsg
	// takes back, so a reply goes to exactly where the datagram came from
	// (an IPv6 link-local source keeps its scope).
	names []unix.RawSockaddrInet6
	oob   []byte // control slots of control bytes each
	bufs  []byte // data slots of slotSize bytes each

	out    []mmsghdr
	outIov []unix.Iovec
	nOut   int // messages queued in out
	first  int // the first queued message not yet sent

	// The system calls' results, and the functions RawConn runs. The
	// functions are method values made once: a closure made per call
	// would be allocated per batch.
	got            int
	errno          unix.Errno
	recvFn, sendFn func(fd uintptr) bool
}

// NewBatch returns a Batch for c with slots datagrams of up to slotSize
// bytes each. With control > 0, each datagram's control messages (those
// the socket was asked for, such as IP_PKTINFO) are read too, up to control
// bytes of them.
func NewBatch(c *net.UDPConn, slots, slotSize, control int) (*Batch, error) {
	if slots < 1 || slotSize < 1 || control < 0 {
		return nil, fmt.Errorf("mmsg: batch of %d slots of %d bytes with %d control bytes", slots, slotSize, control)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &Batch{
		rc: rc, slotSize: slotSize, control: control,
		in: make([]mmsghdr, slots), inIov: make([]unix.Iovec, slots),
		names: make([]unix.RawSockaddrInet6, slots),
		oob:   make([]byte, slots*control), bufs: make([]byte, slots*slotSize),
		out: make([]mmsghdr, slots), outIov: make([]unix.Iovec, slots),
	}
	for i := range slots {
		b.inIov[i].Base = &b.bufs[i*slotSize]
		b.inIov[i].SetLen(slotSize)
		h := &b.in[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.inIov[i]
		h.SetIovlen(1)
		if control > 0 {
			h.Control = &b.oob[i*control]
		}
		b.out[i].Hdr.Iov = &b.outIov[i]
		b.out[i].Hdr.SetIovlen(1)
	}
	b.recvFn, b.sendFn = b.recv, b.send
	return b, nil
}

// Slots is the most datagrams one Read takes and Flush may be given.
func (b *Batch) Slots() int { return len(b.in) }

// Read waits for datagrams (and the socket's read deadline) and takes as
// many as are queued, up to Slots, in one recvmmsg; it returns how many.
// The datagrams stay readable until the next Read.
func (b *Batch) Read() (int, error) {
	for i := range b.in {
		h := &b.in[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(b.control)
		h.Flags = 0
	}
	b.got, b.errno = 0, 0
	if err := b.rc.Read(b.recvFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.got, nil
}

func (b *Batch) recv(fd uintptr) bool {
	// MSG_TRUNC: each length is the datagram's own, even past its slot.
	var done bool
	b.got, b.errno, done = recvmmsg(fd, b.in, unix.MSG_TRUNC)
	return done
}

// Datagram returns the i-th datagram Read took, at most slotSize bytes of
// it, and its length in full: longer than p when it did not fit its slot.
func (b *Batch) Datagram(i int) (p []byte, n int) {
	n = int(b.in[i].N)
	start := i * b.slotSize
	return b.bufs[start : start+min(n, b.slotSize)], n
}

// Control returns the i-th datagram's control messages.
func (b *Batch) Control(i int) []byte {
	start := i * b.control
	return b.oob[start : start+min(int(b.in[i].Hdr.Controllen), b.control)]
}

// Source returns the i-th datagram's sender, or the zero AddrPort if the
// kernel gave none it knows. An IPv4 sender on a dual-stack socket shows
// as an IPv4-mapped IPv6 address.
func (b *Batch) Source(i int) netip.AddrPort {
	name := &b.names[i]
	switch {
	case name.Family == unix.AF_INET && b.in[i].Hdr.Namelen >= unix.SizeofSockaddrInet4:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case name.Family == unix.AF_INET6 && b.in[i].Hdr.Namelen >= unix.SizeofSockaddrInet6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&name.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(name.Addr), port)
	}
	return netip.AddrPort{}
}

// Reply queues the i-th datagram Read took (what its slot holds) to be
// sent back to its source by Flush. It must come before the next Read.
func (b *Batch) Reply(i int) {
	p, _ := b.Datagram(i)
	b.queue(p, b.in[i].Hdr.Name, b.in[i].Hdr.Namelen)
}

// Queue queues p to be sent by Flush to the socket's connected peer. p
// must stay unchanged until then.
func (b *Batch) Queue(p []byte) {
	b.queue(p, nil, 0)
}

// Queued is how many datagrams wait for Flush. At most Slots may: queueing
// one more is a programming error, and panics.
func (b *Batch) Queued() int { return b.nOut }

func (b *Batch) queue(p []byte, name *byte, namelen uint32) {
	if b.nOut == len(b.out) {
		panic("mmsg: Batch.Queue or Reply with Slots datagrams already queued")
	}
	o := &b.out[b.nOut].Hdr
	o.Name, o.Namelen = name, namelen
	iov := &b.outIov[b.nOut]
	iov.Base = unsafe.SliceData(p)
	iov.SetLen(len(p))
	b.nOut++
}

// Flush sends every queued datagram with as few sendmmsg calls as the
// kernel allows (it may take fewer than asked, and is asked again for the
// rest) and returns how many went and their bytes. A datagram the kernel
// refuses (too large, no route, a pending ICMP error on a connected
// socket) is skipped and the rest still go; err is then the first refusal.
// An error from the socket itself (closed, or past its write deadline)
// ends the flush and is returned. Either way the queue is empty after.
func (b *Batch) Flush() (sent int, bytes uint64, err error) {
	defer func() { b.nOut, b.first = 0, 0 }()
	for b.first < b.nOut {
		b.got, b.errno = 0, 0
		if werr := b.rc.Write(b.sendFn); werr != nil {
			return sent, bytes, werr
		}
		if b.errno != 0 {
			// sendmmsg reports the first message's failure alone.
			if err == nil {
				err = os.NewSyscallError("sendmmsg", b.errno)
			}
			b.first++
			continue
		}
		for _, o := range b.out[b.first : b.first+b.got] {
			sent++
			bytes += uint64(o.N)
		}
		b.first += b.got
	}
	return sent, bytes, err
}

func (b *Batch) send(fd uintptr) bool {
	var done bool
	b.got, b.errno, done = sendmmsg(fd, b.out[b.first:b.nOut], 0)
	return done
}
