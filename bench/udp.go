package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// udpHeader is the start of each datagram: the slot it was sent from and
// the slot's generation, so its echo can be matched and checked whole.
const udpHeader = 8

// udpLossTimeout is how long a socket waits for any echo before it counts
// its outstanding datagrams as lost and sends new ones.
const udpLossTimeout = 200 * time.Millisecond

// udpCounts are the UDP mode's counts over the measured window.
type udpCounts struct {
	sent, lost, late atomic.Int64
}

// udpSlot is one datagram in flight.
type udpSlot struct {
	gen     uint32
	pending bool
	sentAt  time.Time
	data    []byte
}

// udpLoop runs a UDP socket for worker w until ctx is done, opening a new
// one after each failure (such as ICMP port unreachable) with a back-off.
func (r *runner) udpLoop(ctx context.Context, w int) {
	var backoff time.Duration
	for gen := uint64(0); ctx.Err() == nil; gen++ {
		ops, err := r.udpSocket(ctx, w, seedFor(w, gen))
		if ctx.Err() != nil {
			return
		}
		r.faults.add(err)
		if ops > 0 {
			backoff = 0
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
		sleep(ctx, backoff)
	}
}

func (r *runner) udpSocket(ctx context.Context, w int, seed uint64) (int64, error) {
	d := net.Dialer{}
	if n := len(r.cfg.Sources); n > 0 {
		d.LocalAddr = &net.UDPAddr{IP: r.cfg.Sources[w%n].AsSlice()}
	}
	conn, err := d.DialContext(ctx, "udp", r.addr)
	if err != nil {
		return 0, &connectError{err: err}
	}
	c := conn.(*net.UDPConn)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	defer stop()

	uio, err := newUDPIO(c, r.cfg.Size, r.cfg.Depth)
	if err != nil {
		return 0, err
	}
	src := pattern.NewStream(seed)
	slots := make([]udpSlot, r.cfg.Depth)
	send := func(i int) error {
		s := &slots[i]
		s.gen++
		if s.data == nil {
			s.data = make([]byte, r.cfg.Size)
		}
		binary.BigEndian.PutUint32(s.data[0:], uint32(i))
		binary.BigEndian.PutUint32(s.data[4:], s.gen)
		src.Read(s.data[udpHeader:])
		s.pending, s.sentAt = true, time.Now()
		if r.measuring.Load() {
			r.udp.sent.Add(1)
		}
		return uio.write(s.data)
	}
	for i := range slots {
		if err := send(i); err != nil {
			return 0, err
		}
	}
	if err := uio.flush(); err != nil {
		return 0, err
	}

	var n int64
	timeout := min(r.cfg.Timeout, udpLossTimeout)
	for {
		c.SetReadDeadline(time.Now().Add(timeout))
		if ctx.Err() != nil {
			return n, nil
		}
		got, err := uio.read()
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			// Nothing came back in time: count what is outstanding as lost
			// and start again, so one lost datagram does not stall the socket.
			for i := range slots {
				if slots[i].pending {
					if r.measuring.Load() {
						r.udp.lost.Add(1)
					}
					slots[i].pending = false
				}
				if err := send(i); err != nil {
					return n, err
				}
			}
			if err := uio.flush(); err != nil {
				return n, err
			}
			continue
		}
		if err != nil {
			return n, err
		}
		for j := range got {
			p, size := uio.datagram(j)
			if size > len(p) {
				r.mismatch(w, fmt.Errorf("datagram of %d bytes echoed as %d bytes", r.cfg.Size, size))
				continue
			}
			i, ok := r.matchDatagram(w, p, slots)
			if i < 0 {
				continue
			}
			slots[i].pending = false
			if ok {
				r.complete(w, 1, time.Since(slots[i].sentAt))
				n++
			}
			if err := send(i); err != nil {
				return n, err
			}
		}
		if err := uio.flush(); err != nil {
			return n, err
		}
	}
}

// matchDatagram finds the slot that sent the echoed datagram p and reports
// whether p is exactly what that slot sent. A late echo (of a datagram
// already counted as lost) or a duplicate is counted and ignored, as is an
// echo whose header was never sent: the slot is then -1. Anything else that
// differs is a mismatch.
func (r *runner) matchDatagram(w int, p []byte, slots []udpSlot) (slot int, ok bool) {
	if len(p) < udpHeader {
		r.mismatch(w, fmt.Errorf("datagram of %d bytes echoed as %d bytes", r.cfg.Size, len(p)))
		return -1, false
	}
	i := int(binary.BigEndian.Uint32(p[0:]))
	gen := binary.BigEndian.Uint32(p[4:])
	if i < len(slots) && (gen < slots[i].gen || gen == slots[i].gen && !slots[i].pending) {
		if r.measuring.Load() {
			r.udp.late.Add(1)
		}
		return -1, false
	}
	if i >= len(slots) || gen != slots[i].gen {
		r.mismatch(w, fmt.Errorf("echoed datagram has a header that was never sent (slot %d, generation %d)", i, gen))
		return -1, false
	}
	want := slots[i].data
	if len(p) != len(want) {
		r.mismatch(w, fmt.Errorf("datagram of %d bytes echoed as %d bytes", len(want), len(p)))
		return i, false
	}
	if j := pattern.FirstDiff(p, want); j >= 0 {
		r.mismatch(w, fmt.Errorf("datagram: %w", &pattern.Mismatch{Offset: int64(j), Got: p[j], Want: want[j]}))
		return i, false
	}
	return i, true
}
