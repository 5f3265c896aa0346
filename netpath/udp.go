package netpath

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/target"
)

// maxDatagram is the largest UDP payload over IPv4.
const maxDatagram = 65507

// datagramSizes are tried at once for the largest datagram echoed whole:
// the common limits (jumbo frames, Ethernet, IPv6's minimum, old MTUs).
var datagramSizes = []int{maxDatagram, 32768, 16384, 9000, 8192, 4096, 2048, 1472, 1452, 1400, 1280, 1232, 1200, 1024, 576, 548, 512, 256}

// Datagrams is what the path does to UDP datagrams.
type Datagrams struct {
	// Largest is the largest datagram echoed whole; Smallest lost the
	// smallest size tried above it that never came back (0: none).
	Largest      int `json:"largest"`
	SmallestLost int `json:"smallest_lost,omitempty"`
	// CutTo is the length larger datagrams came back cut to, whole up to
	// it (a server reading into a buffer that size); 0 when none were.
	CutTo int `json:"cut_to,omitempty"`
	// Changed counts the datagrams that came back with other bytes, or
	// another length, than were sent.
	Changed int    `json:"changed"`
	Err     string `json:"error,omitempty"`
}

func runUDP(ctx context.Context, cfg Config, r *Report) error {
	addr, err := target.Resolve(ctx, cfg.Target.Addr())
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	dial := func() (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}
	c, err := dial()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	wait := min(cfg.Patience, time.Second)
	rtt, changed := udpRTT(c, cfg.Echoes, wait)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rtt.Echoes == 0 && changed > 0 {
		rtt.Err = fmt.Sprintf("%d of %d datagrams came back, all changed: something alters them", changed, cfg.Echoes)
		r.set(rtt, func() { r.RTT = rtt })
		return fmt.Errorf("%w: %s", ErrNoEcho, rtt.Err)
	}
	if rtt.Echoes == 0 {
		return fmt.Errorf("%w: no UDP echo came back from %s within %v (%d datagrams sent): is an echo server listening on UDP there?", ErrUnreachable, addr, wait, cfg.Echoes)
	}
	r.set(rtt, func() { r.RTT = rtt })
	wait = max(4*rtt.Max, 300*time.Millisecond)
	dg := largestDatagram(c, wait)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	dg.Changed += changed
	r.set(dg, func() { r.Datagrams = dg })
	if cfg.MaxIdle > 0 {
		idle := probeIdle(ctx, idleTimes(cfg.MaxIdle), probeFlow(dial, wait))
		if ctx.Err() != nil {
			return ctx.Err() // cut short: the probes that did not finish would read as survived
		}
		r.set(idle, func() { r.Idle = idle })
	}
	return ctx.Err()
}

// udpRTT times n datagrams, one at a time, and counts the lost and changed.
func udpRTT(c net.Conn, n int, wait time.Duration) (*RTT, int) {
	r := &RTT{}
	var samples []time.Duration
	changed := 0
	src := pattern.NewStream(1)
	msg, buf := make([]byte, echoSize), make([]byte, maxDatagram)
	for range n {
		src.Read(msg)
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			r.Err = "send: " + err.Error()
			break
		}
		c.SetReadDeadline(start.Add(wait))
		for {
			k, err := c.Read(buf)
			if err != nil {
				r.Lost++
				break
			}
			if bytes.Equal(buf[:k], msg) {
				samples = append(samples, time.Since(start))
				break
			}
			if k == len(msg) {
				changed++ // or a late echo of an earlier datagram
			}
		}
	}
	summarize(r, samples)
	return r, changed
}

// largestDatagram sends a datagram of each size at once, then narrows the
// gap between the largest echoed and the next size up.
func largestDatagram(c net.Conn, wait time.Duration) *Datagrams {
	dg := &Datagrams{}
	sizes := datagramSizes
	for round := 0; round < 4 && len(sizes) > 0; round++ {
		echoed, cut, changed := tryDatagrams(c, sizes, wait)
		dg.Changed += changed
		dg.CutTo = max(dg.CutTo, cut)
		for _, s := range sizes {
			if echoed[s] {
				dg.Largest = max(dg.Largest, s)
			} else if s > dg.Largest && (dg.SmallestLost == 0 || s < dg.SmallestLost) {
				dg.SmallestLost = s
			}
		}
		if dg.SmallestLost != 0 && dg.SmallestLost < dg.Largest {
			// A bigger one came back where a smaller was lost: loss, not a
			// limit; the next round tries it again.
			dg.SmallestLost = 0
		}
		sizes = nil
		lo, hi := dg.Largest, dg.SmallestLost
		if hi == 0 || hi-lo <= 1 {
			break
		}
		step := max((hi-lo)/16, 1)
		for s := lo + step; s < hi; s += step {
			sizes = append(sizes, s)
		}
	}
	if dg.Largest == 0 {
		dg.Err = "no datagram of any size tried came back"
	}
	return dg
}

// tryDatagrams sends one datagram of each size and reports which came back
// whole within wait, the length of the longest that came back cut short
// (the start of one sent, whole up to there), and how many came back
// changed.
func tryDatagrams(c net.Conn, sizes []int, wait time.Duration) (echoed map[int]bool, cut, changed int) {
	want := map[int][]byte{}
	for _, s := range sizes {
		p := make([]byte, s)
		pattern.NewStream(uint64(s)).Read(p)
		want[s] = p
		c.Write(p) // a size the socket refuses (EMSGSIZE) just never comes back
	}
	echoed = map[int]bool{}
	buf := make([]byte, maxDatagram+1)
	c.SetReadDeadline(time.Now().Add(wait))
	for len(echoed) < len(sizes) {
		k, err := c.Read(buf)
		if err != nil {
			break
		}
		if w, ok := want[k]; ok && bytes.Equal(buf[:k], w) {
			echoed[k] = true
			continue
		}
		if prefixOfOne(buf[:k], want) {
			cut = max(cut, k)
			continue
		}
		changed++
	}
	return echoed, cut, changed
}

// prefixOfOne reports whether p is the start of a longer datagram of sent.
func prefixOfOne(p []byte, sent map[int][]byte) bool {
	for n, w := range sent {
		if n > len(p) && bytes.Equal(w[:len(p)], p) {
			return true
		}
	}
	return false
}

// probeFlow is the prober for UDP: one echo on a socket of its own, quiet
// for idle, then another echo on the same socket.
func probeFlow(dial func() (net.Conn, error), wait time.Duration) prober {
	return func(ctx context.Context, idle time.Duration) IdleProbe {
		c, err := dial()
		if err != nil {
			return IdleProbe{Outcome: "error", Err: err.Error()}
		}
		defer c.Close()
		echo := func() bool {
			// Three tries, so that one lost datagram is not taken for a
			// dead flow.
			for range 3 {
				r, _ := udpRTT(c, 1, wait)
				if r.Echoes == 1 {
					return true
				}
			}
			return false
		}
		if !echo() {
			return IdleProbe{Outcome: "error", Err: "no echo before the idle time"}
		}
		t := time.NewTimer(idle)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return IdleProbe{Outcome: "cancelled"}
		case <-t.C:
		}
		if !echo() {
			return IdleProbe{Outcome: "dead", Err: fmt.Sprintf("no echo within %v, three tries", wait)}
		}
		return IdleProbe{Outcome: "echoed"}
	}
}
