//go:build unix

package echo

import "syscall"

const rawReadSupported = true

func rawRead(fd uintptr, p []byte) (int, error) {
	return syscall.Read(int(fd), p)
}

// peekReadable reports whether the socket fd has bytes, its end or an error
// to read, without taking any: b is where a byte is peeked at.
func peekReadable(fd uintptr, b []byte) bool {
	for {
		_, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK)
		if err != syscall.EINTR {
			return err != syscall.EAGAIN
		}
	}
}
