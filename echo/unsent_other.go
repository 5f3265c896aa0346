//go:build !linux

package echo

import "syscall"

// unsentSupported is false where a socket's unsent byte count is not read:
// progress is seen only as the server's reads and writes return.
const unsentSupported = false

func unsentBytes(syscall.RawConn) (int, bool) { return 0, false }
