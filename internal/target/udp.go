package target

import (
	"bytes"
	"context"
	"net"
	"time"
)

// udpProbeWait is how long AnswersUDP waits for the echo of its datagram:
// a loopback or LAN echo answers in well under a millisecond, and the
// caller is about to report an error, so a person waits at most this.
const udpProbeWait = 300 * time.Millisecond

// AnswersUDP reports whether a UDP echo server answers at addr: whether
// one datagram sent there comes back unchanged within ctx and a short
// wait. It explains a refused TCP connection to a UDP-only echo server.
func AnswersUDP(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, udpProbeWait)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	probe := []byte("echod: is UDP echo served here?")
	if _, err := c.Write(probe); err != nil {
		return false
	}
	buf := make([]byte, 2*len(probe))
	n, err := c.Read(buf)
	return err == nil && bytes.Equal(buf[:n], probe)
}
