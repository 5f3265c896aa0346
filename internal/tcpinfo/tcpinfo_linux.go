package tcpinfo

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

func of(c *net.TCPConn) (Info, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Info{}, false
	}
	var ti *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		ti, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || serr != nil {
		return Info{}, false
	}
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return Info{
		RTT:         us(ti.Rtt),
		RTTVar:      us(ti.Rttvar),
		MinRTT:      us(ti.Min_rtt),
		SendMSS:     int(ti.Snd_mss),
		RecvMSS:     int(ti.Rcv_mss),
		PathMTU:     int(ti.Pmtu),
		Retransmits: int(ti.Total_retrans),
	}, true
}
