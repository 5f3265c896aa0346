package netpath

import (
	"context"
	"fmt"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/tcpinfo"
)

// Integrity is what became of a bulk echo, every byte compared with what
// was sent, and the segments it came back in.
type Integrity struct {
	Sent   int `json:"sent"`
	Echoed int `json:"echoed"`
	// Changed, Dropped and Duplicated count single bytes that came back
	// altered, missing or twice, the bytes around them intact.
	Changed    int `json:"changed"`
	Dropped    int `json:"dropped"`
	Duplicated int `json:"duplicated"`
	// Garbled is the offset from which the echo no longer lines up with
	// what was sent, byte for byte, however it is shifted (reordered or
	// mangled); -1 when it lines up to the end.
	Garbled int64 `json:"garbled_from"`
	// First is the offset of the first byte that differs; -1 for none.
	First int64 `json:"first_difference"`
	// LargestRead is the most bytes one read returned. RecvMSS is the
	// kernel's estimate of the largest segment the far end of this
	// connection sends, and SendMSS the largest this end sends (Linux
	// only; 0 where unknown).
	LargestRead int    `json:"largest_read"`
	RecvMSS     int    `json:"recv_mss,omitempty"`
	SendMSS     int    `json:"send_mss,omitempty"`
	Err         string `json:"error,omitempty"`
}

// Intact reports whether the echo came back whole and unchanged.
func (in *Integrity) Intact() bool {
	return in.Err == "" && in.Echoed == in.Sent && in.First < 0
}

// checkIntegrity echoes cfg.Bulk bytes on a connection of its own and
// compares what comes back with what was sent, waiting up to quiet for
// the next byte before taking the rest as lost.
func checkIntegrity(ctx context.Context, d dialer, cfg Config, quiet time.Duration) *Integrity {
	in := &Integrity{Sent: cfg.Bulk, First: -1, Garbled: -1}
	s, err := d.dial(ctx)
	if err != nil {
		in.Err = err.Error()
		return in
	}
	defer s.Close()
	want := make([]byte, cfg.Bulk)
	pattern.NewStream(2).Read(want)
	writeErr := make(chan error, 1)
	go func() {
		// Written in pieces, as a program writes, not one large write.
		for b := want; len(b) > 0; b = b[min(len(b), 16<<10):] {
			if _, err := s.Write(b[:min(len(b), 16<<10)]); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	// A duplicated byte makes the echo longer than what was sent: room
	// for a few.
	got := make([]byte, 0, cfg.Bulk+64)
	buf := make([]byte, 64<<10)
	for len(got) < cfg.Bulk+64 {
		s.SetReadDeadline(time.Now().Add(quiet))
		n, err := s.Read(buf)
		in.LargestRead = max(in.LargestRead, n)
		got = append(got, buf[:n]...)
		if err != nil {
			if len(got) < cfg.Bulk {
				in.Err = fmt.Sprintf("the echo stopped after %d of %d bytes: %v", len(got), cfg.Bulk, readErr(err, quiet))
			}
			break
		}
		if len(got) == cfg.Bulk {
			// Whole, unless a byte came twice and one more is on its way:
			// a short wait tells, without costing the clean path much.
			s.SetReadDeadline(time.Now().Add(min(quiet, 200*time.Millisecond)))
			n, _ := s.Read(buf)
			got = append(got, buf[:n]...)
			break
		}
	}
	if ti, ok := tcpinfo.Of(s.Conn); ok {
		in.RecvMSS, in.SendMSS = ti.RecvMSS, ti.SendMSS
	}
	s.Abort() // also ends the writer, if it is stuck on a path that stopped
	<-writeErr
	in.Echoed = len(got)
	compare(in, got, want)
	return in
}

// agreeLen is how many bytes after a difference must agree for it to be
// taken as one byte changed, dropped or duplicated: the pattern is
// pseudo-random, so eight agreeing by chance is out of the question.
const agreeLen = 8

// compare walks got against want and counts single-byte changes, drops and
// duplicates, stopping where they no longer line up.
func compare(in *Integrity, got, want []byte) {
	i, j := 0, 0
	for i < len(got) && j < len(want) {
		if got[i] == want[j] {
			i++
			j++
			continue
		}
		if in.First < 0 {
			in.First = int64(j)
		}
		switch {
		case agree(got[i+1:], want[j+1:]):
			in.Changed++
			i, j = i+1, j+1
		case agree(got[i:], want[j+1:]):
			in.Dropped++
			j++
		case agree(got[i+1:], want[j:]):
			in.Duplicated++
			i++
		default:
			in.Garbled = int64(j)
			return
		}
	}
	if i < len(got) && in.First < 0 {
		in.First = int64(j) // more came back than was sent
	}
	in.Duplicated += max(len(got)-i, 0)
}

// agree reports whether a and b start with the same agreeLen bytes, or as
// many as both have.
func agree(a, b []byte) bool {
	n := min(agreeLen, len(a), len(b))
	for k := range n {
		if a[k] != b[k] {
			return false
		}
	}
	return true
}
