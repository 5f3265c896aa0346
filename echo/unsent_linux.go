package echo

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// unsentSupported says whether unsentBytes works here.
const unsentSupported = true

// unsentBytes returns how many bytes the socket holds that the peer has not
// acknowledged yet (SIOCOUTQ): when it falls, the client is reading.
func unsentBytes(rc syscall.RawConn) (int, bool) {
	var n int
	var err error
	if cerr := rc.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); cerr != nil || err != nil {
		return 0, false
	}
	return n, true
}
