package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindAddressNoPort defers the choice of local port to connect time for a
// connection from a chosen source address: without IP_BIND_ADDRESS_NO_PORT
// the kernel picks the port at bind time, before it knows the destination,
// and reserves it as if for every destination.
func bindAddressNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
