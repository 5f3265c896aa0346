//go:build !linux

package tcpinfo

import "net"

func of(*net.TCPConn) (Info, bool) { return Info{}, false }
