package netpath

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// halfCloseSize is how much is in flight when the client half-closes:
// more than a few segments, less than any socket buffer.
const halfCloseSize = 16 << 10

// HalfClose is what happened after the client half-closed with bytes in
// flight.
type HalfClose struct {
	Sent   int `json:"sent"`
	Echoed int `json:"echoed"`
	// Outcome is "half-close" when every byte came back and then EOF, as a
	// half-close should; "closed" when the connection ended (EOF or reset)
	// before the echo did; "held" when the echo came back but the
	// connection stayed open; "stalled" when the echo stopped short and
	// the connection stayed open; "changed" when the echo differed.
	Outcome string `json:"outcome"`
	// Reset says the connection ended with a reset rather than EOF.
	Reset bool `json:"reset,omitempty"`
	// After is how long after the half-close the connection ended.
	After time.Duration `json:"after_ns"`
	Err   string        `json:"error,omitempty"`
}

// checkHalfClose writes halfCloseSize bytes, half-closes at once, and
// reads what comes back until EOF, waiting up to patience for each byte.
func checkHalfClose(ctx context.Context, d dialer, patience time.Duration) *HalfClose {
	hc := &HalfClose{Sent: halfCloseSize}
	s, err := d.dial(ctx)
	if err != nil {
		hc.Err = err.Error()
		return hc
	}
	defer s.Close()
	msg := make([]byte, halfCloseSize)
	pattern.NewStream(3).Read(msg)
	if _, err := s.Write(msg); err != nil {
		hc.Err = "write: " + err.Error()
		return hc
	}
	if err := s.CloseWrite(); err != nil {
		hc.Err = "half-close: " + err.Error()
		return hc
	}
	closed := time.Now()
	v := pattern.NewVerifier(pattern.NewStream(3))
	buf := make([]byte, 32<<10)
	for {
		s.SetReadDeadline(time.Now().Add(patience))
		n, err := s.Read(buf)
		if _, verr := v.Write(buf[:n]); verr != nil {
			hc.Outcome = "changed"
			hc.Echoed = int(v.Verified())
			hc.Err = verr.Error()
			return hc
		}
		if err == nil {
			continue
		}
		hc.Echoed = int(v.Verified())
		hc.After = time.Since(closed)
		switch {
		case isTimeout(err):
			if hc.Echoed == hc.Sent {
				hc.Outcome = "held"
			} else {
				hc.Outcome = "stalled"
				hc.Err = readErr(err, patience).Error()
			}
		case errors.Is(err, io.EOF) && hc.Echoed == hc.Sent:
			hc.Outcome = "half-close"
		default:
			hc.Outcome = "closed"
			hc.Reset = !errors.Is(err, io.EOF)
		}
		return hc
	}
}
