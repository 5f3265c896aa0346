//go:build linux

// Package mmsg moves many datagrams per system call with Linux's recvmmsg
// and sendmmsg. The UDP echo server and the load generator both batch their
// datagrams through its Batch.
package mmsg

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2), which
// golang.org/x/sys/unix does not declare: a msghdr and the byte count the
// kernel fills in. Go pads it as C does on every Linux architecture.
type mmsghdr struct {
	Hdr unix.Msghdr
	N   uint32
}

// recvmmsg receives up to len(msgs) datagrams on fd with recvmmsg and returns
// how many arrived, or the call's errno. done is false when nothing was
// waiting: the func given to syscall.RawConn.Read returns it, so that the
// runtime waits until fd is readable and calls again.
func recvmmsg(fd uintptr, msgs []mmsghdr, flags int) (n int, errno unix.Errno, done bool) {
	return call(unix.SYS_RECVMMSG, fd, msgs, flags)
}

// sendmmsg sends msgs on fd with sendmmsg and returns how many went, or the
// errno for the first that could not. done is false when the socket has no
// room, for syscall.RawConn.Write as for recvmmsg.
func sendmmsg(fd uintptr, msgs []mmsghdr, flags int) (n int, errno unix.Errno, done bool) {
	return call(unix.SYS_SENDMMSG, fd, msgs, flags)
}

func call(trap, fd uintptr, msgs []mmsghdr, flags int) (int, unix.Errno, bool) {
	for {
		// The conversion inside the call keeps msgs, and what its headers
		// point to, alive until the kernel is done with them.
		r, _, e := unix.Syscall6(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(msgs))), uintptr(len(msgs)), uintptr(flags), 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, 0, false
		}
		return int(r), e, true
	}
}
