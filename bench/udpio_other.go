//go:build !linux

package bench

import "net"

// udpIO moves datagrams on a connected UDP socket, one per system call
// (batches are Linux's, in udpio_linux.go).
type udpIO struct {
	c   *net.UDPConn
	buf []byte
	n   int
}

func newUDPIO(c *net.UDPConn, size, depth int) (*udpIO, error) {
	return &udpIO{c: c, buf: make([]byte, 64<<10)}, nil
}

// read waits for one echo (and the socket's read deadline).
func (u *udpIO) read() (int, error) {
	n, err := u.c.Read(u.buf)
	if err != nil {
		return 0, err
	}
	u.n = n
	return 1, nil
}

// datagram returns the echo read and its length.
func (u *udpIO) datagram(int) ([]byte, int) { return u.buf[:u.n], u.n }

// write sends p.
func (u *udpIO) write(p []byte) error {
	_, err := u.c.Write(p)
	return err
}

// flush has nothing to do: write sent at once.
func (u *udpIO) flush() error { return nil }
