// Package tcpinfo reads what the kernel knows of a TCP connection (its
// smoothed round-trip time, segment sizes and retransmissions) from Linux's
// TCP_INFO. Elsewhere it reports that it knows nothing, so callers say so
// rather than guess.
package tcpinfo

import (
	"net"
	"time"
)

// Info is the kernel's view of one TCP connection.
type Info struct {
	// RTT is the smoothed round-trip time, RTTVar its variation and MinRTT
	// the least seen.
	RTT    time.Duration `json:"rtt_ns"`
	RTTVar time.Duration `json:"rtt_var_ns"`
	MinRTT time.Duration `json:"min_rtt_ns"`
	// SendMSS is the largest segment this end sends; RecvMSS the kernel's
	// estimate of the largest the peer sends, from the segments received.
	SendMSS int `json:"send_mss"`
	RecvMSS int `json:"recv_mss"`
	// PathMTU is the path MTU the kernel uses.
	PathMTU int `json:"path_mtu"`
	// Retransmits counts the segments sent again, over the connection's
	// life.
	Retransmits int `json:"retransmits"`
}

// Of returns the kernel's view of the TCP connection under c (which may be
// wrapped by TLS, or by any wrapper with a NetConn method), and false where
// there is none: not Linux, or not TCP.
func Of(c net.Conn) (Info, bool) {
	tc := tcpConn(c)
	if tc == nil {
		return Info{}, false
	}
	return of(tc)
}

// tcpConn unwraps c down to its *net.TCPConn, or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	// The bound guards against a wrapper that returns itself.
	for range 8 {
		switch w := c.(type) {
		case *net.TCPConn:
			return w
		case interface{ NetConn() net.Conn }: // crypto/tls, echod's own wrappers
			c = w.NetConn()
		default:
			return nil
		}
	}
	return nil
}
