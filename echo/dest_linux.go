package echo

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// oobSize holds the control messages enableDest asks for: one IPv4 and one
// IPv6 packet-info message at most.
const oobSize = 128

// enableDest asks the kernel to report each datagram's destination with it:
// IP_PKTINFO for IPv4 (also on a dual-stack IPv6 socket) and IPV6_PKTINFO
// for IPv6. It reports whether that worked.
func enableDest(uc *net.UDPConn) bool {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false
	}
	var v4, v6 error
	err = rc.Control(func(fd uintptr) {
		v4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		v6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	})
	return err == nil && (v4 == nil || v6 == nil)
}

// unicastDest reports whether the control messages oob, as ReadMsgUDP
// returns them, say the datagram was sent to one of this host's unicast
// addresses, not a broadcast (such as 192.0.2.255) or multicast one: one
// forged datagram to those draws a reply from every host on a network (the
// "Fraggle" attack). With no packet information it reports true.
func unicastDest(oob []byte) bool {
	broadcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	// The length check keeps the parser from reading a header past oob.
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return true
		}
		switch {
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// in_pktinfo: ifindex, spec_dst, addr. For a datagram to a
			// local unicast address the kernel answers from that very
			// address (spec_dst == addr); for a broadcast or multicast
			// one, from the interface's own address.
			spec := netip.AddrFrom4([4]byte(data[4:8]))
			dst := netip.AddrFrom4([4]byte(data[8:12]))
			if dst.IsMulticast() || dst == broadcast {
				return false
			}
			// An unset spec_dst (no route was attached) says nothing.
			return dst == spec || spec.IsUnspecified()
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// in6_pktinfo: addr, ifindex. IPv6 has no broadcast; an IPv4
			// datagram on a dual-stack socket shows as ::ffff:a.b.c.d
			// here, and is judged by its IP_PKTINFO message if any.
			dst := netip.AddrFrom16([16]byte(data[:16])).Unmap()
			if dst.IsMulticast() || dst == broadcast {
				return false
			}
		}
		oob = rest
	}
	return true
}
