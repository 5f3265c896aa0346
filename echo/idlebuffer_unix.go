//go:build unix

package echo

import "syscall"

const rawReadSupported = true

func rawRead(fd uintptr, p []byte) (int, error) {
	return syscall.Read(int(fd), p)
}
