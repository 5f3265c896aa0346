//go:build !linux

package echo

import "net"

// echoUDP is one reader of pc (see echoDatagrams). Batches of datagrams per
// system call (recvmmsg, sendmmsg) are Linux's; elsewhere each datagram
// takes its own read and write.
func (s *Server) echoUDP(pc net.PacketConn, g *udpGuard, dest bool) error {
	return s.echoDatagrams(pc, g, dest)
}
