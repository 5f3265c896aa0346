package target

import (
	"bytes"
	"context"
	"io"
	"net"
	"time"
)

// probeWait is how long AnswersUDP and AnswersTCP wait for the echo of
// their probe: a loopback or LAN echo answers in well under a millisecond,
// and the caller is about to report an error, so a person waits at most
// this.
const probeWait = 300 * time.Millisecond

// AnswersUDP reports whether a UDP echo server answers at addr: whether
// one datagram sent there comes back unchanged within ctx and a short
// wait. It explains a refused TCP connection to a UDP-only echo server.
func AnswersUDP(ctx context.Context, addr string) bool {
	return answers(ctx, "udp", addr)
}

// AnswersTCP reports whether a TCP echo server answers at addr: whether
// a few bytes sent there come back unchanged within ctx and a short wait.
// It explains a closed UDP port on a TCP-only echo server.
func AnswersTCP(ctx context.Context, addr string) bool {
	return answers(ctx, "tcp", addr)
}

func answers(ctx context.Context, network, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return false
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	probe := []byte("echod: is echo served here over " + network + "?")
	if _, err := c.Write(probe); err != nil {
		return false
	}
	buf := make([]byte, 2*len(probe))
	var n int
	if network == "udp" {
		// One datagram, which the larger buffer shows whole.
		n, err = c.Read(buf)
	} else {
		// A stream may come back in pieces.
		n, err = io.ReadFull(c, buf[:len(probe)])
	}
	return err == nil && bytes.Equal(buf[:n], probe)
}
