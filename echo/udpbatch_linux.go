package echo

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/echod/echod/internal/mmsg"
)

// udpBatchSize is how many datagrams one recvmmsg takes and one sendmmsg
// answers. Under load the system calls, not the echo, are the cost, and 16
// already divides them by more than ten; each slot holds a whole 64 KiB
// datagram, so more slots would cost memory for little gain.
const udpBatchSize = 16

// udpBatch is one reader's buffers for batches of datagrams, allocated once
// so that nothing is allocated per datagram.
type udpBatch struct {
	fd   syscall.RawConn
	dest bool // ask for each datagram's destination (see enableDest)

	in    [udpBatchSize]mmsg.Hdr
	inIov [udpBatchSize]unix.Iovec
	// Each datagram's source, in the form the kernel gives and sendmmsg
	// takes back, so a reply goes to exactly where the datagram came from
	// (an IPv6 link-local source keeps its scope).
	names [udpBatchSize]unix.RawSockaddrInet6
	oob   [udpBatchSize][oobSize]byte
	bufs  []byte // udpBatchSize slots of udpBufferSize bytes

	out    [udpBatchSize]mmsg.Hdr
	outIov [udpBatchSize]unix.Iovec
	nOut   int // replies queued in out

	// The system calls' results, and the functions RawConn runs. The
	// functions are method values made once: a closure made per call
	// would be allocated per batch.
	got, sent int
	errno     unix.Errno
	sending   []mmsg.Hdr // the replies the next sendmmsg sends
	recvFn    func(fd uintptr) bool
	sendFn    func(fd uintptr) bool
}

func newUDPBatch(fd syscall.RawConn, dest bool) *udpBatch {
	b := &udpBatch{fd: fd, dest: dest, bufs: make([]byte, udpBatchSize*udpBufferSize)}
	for i := range udpBatchSize {
		b.inIov[i].Base = &b.bufs[i*udpBufferSize]
		b.inIov[i].SetLen(udpBufferSize)
		h := &b.in[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.inIov[i]
		h.SetIovlen(1)
		if oobSize > 0 {
			h.Control = &b.oob[i][0]
		}
		b.out[i].Hdr.Iov = &b.outIov[i]
		b.out[i].Hdr.SetIovlen(1)
	}
	b.recvFn = b.recv
	b.sendFn = b.send
	return b
}

// read waits for datagrams and takes as many as are queued, up to
// udpBatchSize, in one recvmmsg; it returns how many.
func (b *udpBatch) read() (int, error) {
	for i := range udpBatchSize {
		h := &b.in[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		if b.dest {
			h.SetControllen(oobSize)
		} else {
			h.SetControllen(0)
		}
		h.Flags = 0
	}
	b.got, b.errno = 0, 0
	if err := b.fd.Read(b.recvFn); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", b.errno)
	}
	return b.got, nil
}

func (b *udpBatch) recv(fd uintptr) bool {
	var done bool
	b.got, b.errno, done = mmsg.Recv(fd, b.in[:], 0)
	return done
}

// control returns the i-th datagram's control messages.
func (b *udpBatch) control(i int) []byte {
	return b.oob[i][:b.in[i].Hdr.Controllen]
}

// source returns the i-th datagram's sender, or the zero AddrPort (which
// the loop guard refuses) if the kernel gave none it knows.
func (b *udpBatch) source(i int) netip.AddrPort {
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

// reply queues the i-th datagram's echo, to its source.
func (b *udpBatch) reply(i int) {
	o := &b.out[b.nOut]
	o.Hdr.Name = b.in[i].Hdr.Name
	o.Hdr.Namelen = b.in[i].Hdr.Namelen
	b.outIov[b.nOut].Base = &b.bufs[i*udpBufferSize]
	b.outIov[b.nOut].SetLen(int(b.in[i].N))
	b.nOut++
}

// flush sends the queued replies with as few sendmmsg calls as the kernel
// allows and returns how many went out and their bytes. A reply the kernel
// refuses (no route, a firewall) is the sender's loss alone, as with a
// single write; it is skipped and the rest still go. An error from the
// socket itself (it was closed) ends the batch: the next read reports it.
func (b *udpBatch) flush() (replies, bytes uint64) {
	for first := 0; first < b.nOut; {
		b.sent, b.errno = 0, 0
		rest := b.out[first:b.nOut]
		b.sending = rest
		if err := b.fd.Write(b.sendFn); err != nil {
			break
		}
		if b.errno != 0 {
			first++ // sendmmsg reports the first message's failure
			continue
		}
		for _, o := range rest[:b.sent] {
			replies++
			bytes += uint64(o.N)
		}
		first += b.sent
	}
	b.nOut = 0
	return replies, bytes
}

func (b *udpBatch) send(fd uintptr) bool {
	var done bool
	b.sent, b.errno, done = mmsg.Send(fd, b.sending, 0)
	return done
}

// echoUDP is one reader of pc (see echoDatagrams). A *net.UDPConn is read
// and answered in batches; anything else one datagram at a time.
func (s *Server) echoUDP(pc net.PacketConn, g *udpGuard, dest bool) error {
	if uc, ok := pc.(*net.UDPConn); ok {
		if rc, err := uc.SyscallConn(); err == nil {
			return s.echoBatches(newUDPBatch(rc, dest), g)
		}
	}
	return s.echoDatagrams(pc, g, dest)
}

// echoBatches is echoDatagrams for a *net.UDPConn on Linux: the same
// checks, counts and replies, with up to udpBatchSize datagrams read by one
// recvmmsg and their echoes written by one sendmmsg.
func (s *Server) echoBatches(b *udpBatch, g *udpGuard) error {
	var backoff time.Duration
	for {
		n, err := b.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !isTemporary(err) {
				return err
			}
			// A shortage of buffers or memory passes; don't spin on it.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		var bytesIn uint64
		for i := range n {
			bytesIn += uint64(b.in[i].N)
		}
		s.counts.udpDatagrams.Add(uint64(n))
		s.counts.udpBytesIn.Add(bytesIn)
		for i := range n {
			if b.dest && !unicastDest(b.control(i)) {
				s.limited(ReasonUDPBadDestination)
				continue
			}
			if r, ok := g.admit(b.source(i)); !ok {
				s.limited(r)
				continue
			}
			b.reply(i)
		}
		replies, bytesOut := b.flush()
		if replies > 0 {
			s.counts.udpReplies.Add(replies)
			s.counts.udpBytesOut.Add(bytesOut)
		}
	}
}
