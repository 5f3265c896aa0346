//go:build !linux

package echo

import "net"

// destSupported says whether ServeUDP can learn each datagram's destination
// address; elsewhere than Linux it does not try.
const destSupported = false

const oobSize = 0

func enableDest(*net.UDPConn) bool { return false }

func unicastDest([]byte) bool { return true }
