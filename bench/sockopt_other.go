//go:build !linux

package bench

import "syscall"

// bindAddressNoPort is a Linux socket option; elsewhere the kernel's
// default applies.
func bindAddressNoPort(network, address string, c syscall.RawConn) error { return nil }
