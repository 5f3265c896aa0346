package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/target"
)

// UDPChecks returns the UDP suite, in the order Run runs it.
func UDPChecks() []Check {
	return []Check{
		{Name: "udp-sizes", Deadline: 30 * time.Second, Func: checkUDPSizes,
			Doc: "datagrams from 1 byte up to the largest UDP allows each come back whole"},
		{Name: "udp-all-bytes", Deadline: 10 * time.Second, Func: checkUDPAllBytes,
			Doc: "a datagram of every byte value 0-255 comes back unchanged"},
		{Name: "udp-one-reply", Deadline: 20 * time.Second, Func: checkUDPOneReply,
			Doc: "each datagram gets exactly one reply"},
	}
}

func isUDP(c Check) bool { return strings.HasPrefix(c.Name, "udp-") }

// udpTries is how often a datagram is sent before its reply counts as
// missing: UDP may lose a datagram even on a good path.
const udpTries = 3

// udpClient is a connected UDP socket tied to a check's context.
type udpClient struct {
	conn *net.UDPConn
	addr string
	wait time.Duration // for one reply, per try
	stop func() bool
	// earlier holds the datagrams exchanged before, so that a late reply
	// to one of them is not taken for the reply to the next.
	earlier [][]byte
}

func (t *Target) dialUDP(ctx context.Context) (*udpClient, error) {
	addr, err := target.Resolve(ctx, t.UDPAddr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	uc := c.(*net.UDPConn)
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	return &udpClient{conn: uc, addr: t.UDPAddr, wait: min(t.Patience, time.Second), stop: stop}, nil
}

func (u *udpClient) Close() error {
	u.stop()
	return u.conn.Close()
}

// maxDatagram is the largest UDP payload to addr's IP version: 65535 less
// the IP and UDP headers.
func maxDatagram(conn *net.UDPConn) int {
	if a, ok := conn.RemoteAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return 65527 // the IPv6 header is not counted in its payload length
	}
	return 65507
}

// errNoReply means a datagram got no reply in udpTries.
var errNoReply = errors.New("no reply")

// exchange sends p and returns the first reply, sending again if none comes
// within u.wait.
func (u *udpClient) exchange(ctx context.Context, p []byte) ([]byte, error) {
	defer func() { u.earlier = append(u.earlier, p) }()
	buf := make([]byte, 64<<10+1)
	for range udpTries {
		if _, err := u.conn.Write(p); err != nil {
			return nil, u.explain(ctx, err)
		}
		setReadDeadline(ctx, u.conn, u.wait)
		for {
			n, err := u.conn.Read(buf)
			if err == nil && u.late(buf[:n]) && !bytes.Equal(buf[:n], p) {
				continue
			}
			if err == nil {
				return buf[:n], nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("no reply to a %d-byte datagram", len(p))
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, u.explain(ctx, err)
			}
			break
		}
	}
	return nil, errNoReply
}

// late reports whether reply is the echo of a datagram exchanged before.
func (u *udpClient) late(reply []byte) bool {
	for _, e := range u.earlier {
		if bytes.Equal(reply, e) {
			return true
		}
	}
	return false
}

func (u *udpClient) explain(ctx context.Context, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		// The common slip: echod serve started without -udp.
		if target.AnswersTCP(ctx, u.addr) {
			return fmt.Errorf("nothing is listening on UDP %s (the port is closed), but TCP echo answers there: start echod serve with -udp", u.addr)
		}
		return fmt.Errorf("nothing is listening on UDP %s (the port is closed)", u.addr)
	}
	return err
}

// judgeDatagram explains how reply differs from the datagram sent, or
// returns nil if they are the same.
func judgeDatagram(sent, reply []byte) error {
	switch d := pattern.FirstDiff(reply, sent); {
	case d >= 0:
		if err := shape(sent, reply); err != nil {
			return fmt.Errorf("the reply to a %d-byte datagram: %w", len(sent), err)
		}
		return fmt.Errorf("the reply to a %d-byte datagram differs: %w", len(sent), pattern.Diff(reply, sent, d, 0))
	case len(reply) < len(sent):
		return fmt.Errorf("the reply to a %d-byte datagram is only its first %d bytes: the server truncates datagrams (its read buffer is too small)", len(sent), len(reply))
	case len(reply) > len(sent):
		if err := shape(sent, reply); err != nil {
			return fmt.Errorf("the reply to a %d-byte datagram: %w", len(sent), err)
		}
		return fmt.Errorf("the reply to a %d-byte datagram is %s longer than it", len(sent), count(len(reply)-len(sent), "byte"))
	}
	return nil
}

func checkUDPSizes(ctx context.Context, t *Target) (string, error) {
	u, err := t.dialUDP(ctx)
	if err != nil {
		return "", err
	}
	defer u.Close()
	biggest := maxDatagram(u.conn)
	sizes := []int{1, 100, 512, 1472, 4096, 8192, 32768, biggest}
	src := pattern.NewStream(17)
	for i, n := range sizes {
		p := make([]byte, n)
		src.Read(p)
		reply, err := u.exchange(ctx, p)
		if errors.Is(err, errNoReply) {
			if i > 0 {
				return "", fmt.Errorf("no reply to a %d-byte datagram in %d tries of %v, though %d-byte ones were answered: the server drops large datagrams (a small read buffer), or something between does (a path or tunnel whose MTU is smaller, without fragmentation); echod path udp://%s finds the largest that gets through, and the same check on the server's own machine tells which",
					n, udpTries, u.wait, sizes[i-1], t.UDPAddr)
			}
			return "", fmt.Errorf("no reply to a %d-byte datagram in %d tries of %v", n, udpTries, u.wait)
		}
		if err != nil {
			return "", err
		}
		if err := judgeDatagram(p, reply); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%d sizes from 1 to %d bytes, each echoed whole", len(sizes), biggest), nil
}

func checkUDPAllBytes(ctx context.Context, t *Target) (string, error) {
	u, err := t.dialUDP(ctx)
	if err != nil {
		return "", err
	}
	defer u.Close()
	p := allBytes()
	reply, err := u.exchange(ctx, p)
	if errors.Is(err, errNoReply) {
		return "", fmt.Errorf("no reply to a %d-byte datagram in %d tries of %v", len(p), udpTries, u.wait)
	}
	if err != nil {
		return "", err
	}
	if err := judgeDatagram(p, reply); err != nil {
		return "", err
	}
	return "0x00-0xff up and down in one 512-byte datagram", nil
}

const oneReplyDatagrams = 10

// checkUDPOneReply sends distinct datagrams one after another and counts
// the replies to each, listening a while after each reply, and after the
// last, for duplicates.
func checkUDPOneReply(ctx context.Context, t *Target) (string, error) {
	u, err := t.dialUDP(ctx)
	if err != nil {
		return "", err
	}
	defer u.Close()
	const quiet = 20 * time.Millisecond
	sent := make([][]byte, oneReplyDatagrams)
	tries := make([]int, oneReplyDatagrams)
	counts := make([]int, oneReplyDatagrams)
	buf := make([]byte, 64<<10+1)
	// listen counts replies against the datagrams sent so far until wait
	// passes without one, or (if until >= 0) datagram until is answered.
	listen := func(wait time.Duration, until int) error {
		for {
			setReadDeadline(ctx, u.conn, wait)
			n, err := u.conn.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				return nil
			}
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("replies to %d datagrams so far", sum(counts))
			}
			if err != nil {
				return u.explain(ctx, err)
			}
			found := false
			for i, p := range sent {
				if p != nil && bytes.Equal(buf[:n], p) {
					counts[i]++
					found = true
				}
			}
			if !found {
				return fmt.Errorf("a %d-byte reply matches no datagram sent (%q...)", n, buf[:min(n, 24)])
			}
			if until >= 0 && counts[until] > 0 {
				return nil
			}
		}
	}
	for i := range sent {
		sent[i] = fmt.Appendf(nil, "datagram %d of %d, one reply please", i+1, oneReplyDatagrams)
		for counts[i] == 0 && tries[i] < udpTries {
			tries[i]++
			if _, err := u.conn.Write(sent[i]); err != nil {
				return "", u.explain(ctx, err)
			}
			if err := listen(u.wait, i); err != nil {
				return "", err
			}
		}
		if counts[i] == 0 {
			return "", fmt.Errorf("datagram %d of %d got no reply in %d tries of %v", i+1, oneReplyDatagrams, udpTries, u.wait)
		}
		if err := listen(quiet, -1); err != nil {
			return "", err
		}
	}
	if err := listen(10*quiet, -1); err != nil {
		return "", err
	}
	for i, n := range counts {
		if n > tries[i] {
			return "", fmt.Errorf("datagram %d of %d got %d replies: the server answers a datagram more than once", i+1, oneReplyDatagrams, n)
		}
	}
	return fmt.Sprintf("%d datagrams, one reply each", oneReplyDatagrams), nil
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
