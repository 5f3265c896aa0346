//go:build !unix

package echo

import "errors"

// rawReadSupported is false where a socket cannot be read by descriptor:
// connections are read through net.Conn, with a buffer held while waiting.
const rawReadSupported = false

func rawRead(uintptr, []byte) (int, error) {
	return 0, errors.New("raw reads unsupported")
}

func peekReadable(uintptr, []byte) bool { return true }
