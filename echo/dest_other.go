//go:build !linux

package echo

import "net"

// Elsewhere than Linux, ServeUDP does not learn datagrams' destinations.
const oobSize = 0

func enableDest(*net.UDPConn) bool { return false }

func unicastDest([]byte) bool { return true }
