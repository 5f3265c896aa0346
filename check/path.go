package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// The failures in this file have a shape that a path between check and
// the server can make as well as the server itself: a proxy or tunnel that
// turns a half-close into a close, or a NAT that drops idle connections.
// check sees only the bytes, so such a failure names both and says how to
// tell them apart.

// closedAtHalfClose is a session that the server's side closed (or reset)
// once the client had half-closed, with part of the echo still missing.
type closedAtHalfClose struct {
	got, sent int64
	reset     bool
	// open, set by explainPath, is what came back of a short message on
	// a connection left open.
	open *openEcho
	addr string
}

func (e *closedAtHalfClose) Error() string {
	how := "closed"
	if e.reset {
		how = "reset"
	}
	msg := fmt.Sprintf("connection %s at the half-close, after %d of %d bytes came back", how, e.got, e.sent)
	switch {
	case e.open == nil:
		return msg
	case e.open.got == 0:
		// A server that echoes only at EOF, behind a path that closes at
		// the half-close, looks the same: the tail says how to tell.
		return msg + ", and an open connection gets no echo either: the server keeps the echo back and closes without sending it (an unflushed bufio.Writer does this: write back what each read returns, and Flush before closing); if the check passes on the server's own machine, something between closes at the half-close"
	case e.open.got < e.open.sent:
		return fmt.Sprintf("%s, and a short message on an open connection came back short too (%d of %d bytes): the server does not write back all it reads", msg, e.open.got, e.open.sent)
	}
	return msg + " (on an open connection the echo does come back): " +
		"the server closes at EOF before writing back all it read, or something between (a proxy or tunnel) turns the half-close into a close; " +
		pathHint(e.addr)
}

// Is makes an empty reply count as errClosedEmpty, which a TLS server gives
// to plain text.
func (e *closedAtHalfClose) Is(target error) bool { return target == errClosedEmpty && e.got == 0 }

// closedIdle is a session closed (or reset) with part of the echo missing,
// after a stretch with no byte either way: what a NAT, a load balancer or
// a server with an idle timeout does.
type closedIdle struct {
	idle      time.Duration
	got, sent int64
	reset     bool
	open      *openEcho // set by explainPath, as for closedAtHalfClose
	addr      string
}

// An unasked close after this much silence is taken for an idle timeout:
// before the half-close, when an echo server has no reason to close at
// all (the checks pause far less between writes); after it, where the
// half-close's own trip across a far path takes a while, only after a
// longer silence.
const (
	idleClose          = 250 * time.Millisecond
	idleCloseHalfClose = time.Second
)

func (e *closedIdle) Error() string {
	how := "closed"
	if e.reset {
		how = "reset"
	}
	msg := fmt.Sprintf("connection %s after %v with no byte either way, after %d of %d bytes came back", how, e.idle.Round(10*time.Millisecond), e.got, e.sent)
	switch {
	case e.open == nil:
		return msg
	case e.open.got < e.open.sent:
		return fmt.Sprintf("%s, and a short message on an open connection got %d of its %d bytes back: the server does not echo all it reads (and closes when it has nothing to do)", msg, e.open.got, e.open.sent)
	}
	return msg + ": something between (a NAT, load balancer or tunnel) or the server closes idle connections; " + pathHint(e.addr)
}

// pathHint says how to tell the path from the server.
func pathHint(addr string) string {
	return "to tell, run the same check on the server's own machine (if it passes there, it is the path), or run echod path " + addr
}

// earlyClose explains a session whose reply stopped short with a close or
// reset, if its timing is one a path can make; else it returns nil.
func earlyClose(got, sent int64, o outcome) error {
	end := o.eofAt
	reset := end.IsZero() && isReset(o.readErr)
	if reset {
		end = o.readAt
	}
	if end.IsZero() {
		return nil
	}
	// A path that turns the half-close into a close does so while the
	// bytes still flow; one that closes idle connections, after silence.
	last := o.lastData
	for _, t := range []time.Time{o.lastWrite, o.halfClosed} {
		if t.After(last) {
			last = t
		}
	}
	least := idleClose
	if !o.halfClosed.IsZero() {
		least = idleCloseHalfClose
	}
	switch idle := end.Sub(last); {
	case !last.IsZero() && idle >= least:
		return &closedIdle{idle: idle, got: got, sent: sent, reset: reset}
	case !o.halfClosed.IsZero() && !end.Before(o.halfClosed):
		return &closedAtHalfClose{got: got, sent: sent, reset: reset}
	}
	return nil
}

// explainPath completes a failure whose shape a path can make with what
// tells the two apart, probing the server once a run if it must. It
// returns err unchanged if it has no such shape.
func (t *Target) explainPath(ctx context.Context, err error) error {
	var half *closedAtHalfClose
	var idle *closedIdle
	var bare, full string
	msg := err.Error()
	switch {
	case errors.As(err, &half):
		bare = half.Error()
		half.addr = t.Addr
		half.open = t.echoWhileOpen(ctx)
		full = half.Error()
	case errors.As(err, &idle):
		bare = idle.Error()
		idle.addr = t.Addr
		idle.open = t.echoWhileOpen(ctx)
		full = idle.Error()
	default:
		return err
	}
	// The checks wrap the bare reason with the client or piece it was:
	// keep that, and complete the reason.
	return &explained{msg: strings.Replace(msg, bare, full, 1), err: err}
}

// explained is an error whose message was completed after it was made.
type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

// openEcho is what came back of a short message sent on a connection left
// open: got, a correct prefix, of sent bytes.
type openEcho struct{ got, sent int }

// echoWhileOpen sends a short message on a connection of its own, without
// a half-close, and says how much of it came back, trying once a run.
// An unknown outcome counts as a full echo: it blames neither side.
func (t *Target) echoWhileOpen(ctx context.Context) *openEcho {
	if t.openEcho != nil {
		return t.openEcho
	}
	msg := []byte("echoed while open?\n")
	o := &openEcho{got: len(msg), sent: len(msg)}
	t.openEcho = o
	ctx, cancel := context.WithTimeout(ctx, t.Patience)
	defer cancel()
	c, stop, err := t.dial(ctx, "tcp")
	if err != nil {
		return o
	}
	defer c.Close()
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return o
	}
	got := make([]byte, len(msg))
	n, _ := io.ReadFull(c, got)
	if d := pattern.FirstDiff(got[:n], msg); d >= 0 {
		n = d
	}
	o.got = n
	return o
}
