package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// setReadDeadline makes reads on c fail once d passes (0: never). It keeps
// the deadline in the past once ctx has ended, as the AfterFunc of dial set
// it, so that only ctx can make a read fail earlier than d.
func setReadDeadline(ctx context.Context, c interface{ SetReadDeadline(time.Time) error }, d time.Duration) {
	var t time.Time
	if d > 0 {
		t = time.Now().Add(d)
	}
	c.SetReadDeadline(t)
	if ctx.Err() != nil {
		c.SetReadDeadline(time.Unix(1, 0))
	}
}

// readDeadline returns now+d, or ctx's deadline if that comes first, for
// connections not tied to ctx.
func readDeadline(ctx context.Context, d time.Duration) time.Time {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		return dl
	}
	if ctx.Err() != nil {
		return time.Unix(1, 0)
	}
	return t
}

// plan is what one client sends: chunks, with a pause between each and
// the next, then (unless keepOpen) a half-close at once after the last, as
// the Protohackers checker does.
type plan struct {
	chunks   [][]byte
	pause    func(i int) time.Duration // after chunk i, unless it is the last; nil: none
	keepOpen bool
}

func (p plan) size() int64 {
	var n int64
	for _, c := range p.chunks {
		n += int64(len(c))
	}
	return n
}

func (p plan) bytes() []byte {
	var b []byte
	for _, c := range p.chunks {
		b = append(b, c...)
	}
	return b
}

// outcome is what a client saw of its session.
type outcome struct {
	got        []byte    // the reply (capped; see maxExtra)
	sinkErr    error     // from the sink the reply was written to
	readErr    error     // what ended the reading: nil for EOF
	writeErr   error     // what stopped the sending, if anything
	halfClosed time.Time // zero if the client did not half-close
	eofAt      time.Time // zero unless the server closed cleanly
	readAt     time.Time // when readErr happened
	lastData   time.Time // when the last byte came back
	lastWrite  time.Time // when the client last sent
}

// maxExtra bounds how much more than it sent a client reads: enough to show
// a padding bug, not enough to be flooded.
const maxExtra = 1 << 20

// talk sends p on c while reading the reply into sink (or, if sink is nil,
// into outcome.got), until EOF, an error, or patience passes without data
// after the half-close. c must come from Target.dial.
func talk(ctx context.Context, c conn, p plan, sink io.Writer, patience time.Duration) outcome {
	var o outcome
	var halfClosed atomic.Int64 // UnixNano of the half-close, once done
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for i, chunk := range p.chunks {
			if _, err := c.Write(chunk); err != nil {
				o.writeErr = err
				return
			}
			o.lastWrite = time.Now()
			if p.pause != nil && i < len(p.chunks)-1 {
				if d := p.pause(i); d > 0 && !sleep(ctx, d) {
					o.writeErr = ctx.Err()
					return
				}
			}
		}
		if p.keepOpen {
			return
		}
		// Taken before the half-close, so that any EOF it causes comes
		// after it.
		now := time.Now()
		if err := c.CloseWrite(); err != nil {
			o.writeErr = fmt.Errorf("half-close: %w", err)
			return
		}
		halfClosed.Store(now.UnixNano())
		// From here on the server has all it will get; it must finish
		// within patience of the last data it sends.
		setReadDeadline(ctx, c, patience)
	}()

	limit := p.size() + maxExtra
	var total int64
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			o.lastData = time.Now()
			total += int64(n)
			if sink != nil {
				if _, werr := sink.Write(buf[:n]); werr != nil && o.sinkErr == nil {
					o.sinkErr = werr
					break
				}
			} else {
				o.got = append(o.got, buf[:n]...)
			}
			if halfClosed.Load() != 0 {
				setReadDeadline(ctx, c, patience)
			}
			if total > limit {
				break
			}
		}
		if err == io.EOF {
			o.eofAt = time.Now()
			break
		}
		if err != nil {
			o.readErr, o.readAt = err, time.Now()
			break
		}
	}
	if errors.Is(o.readErr, os.ErrDeadlineExceeded) && ctx.Err() != nil {
		o.readErr = ctx.Err()
	}
	if o.eofAt.IsZero() {
		// Unblock a writer stuck on a server that stopped reading.
		c.SetWriteDeadline(time.Unix(1, 0))
	}
	<-wrote
	if ns := halfClosed.Load(); ns != 0 {
		o.halfClosed = time.Unix(0, ns)
	}
	return o
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// session dials, talks and judges one whole session whose reply is kept in
// memory: the common case of most checks.
func (t *Target) session(ctx context.Context, network string, p plan) error {
	c, stop, err := t.dial(ctx, network)
	if err != nil {
		return err
	}
	defer c.Close()
	defer stop()
	o := talk(ctx, c, p, nil, t.Patience)
	return judge(p.bytes(), o, t.Patience)
}

// judge explains what is wrong with a session that sent sent and saw o, or
// returns nil if the server echoed exactly sent and then closed.
func judge(sent []byte, o outcome, patience time.Duration) error {
	got := o.got
	if d := pattern.FirstDiff(got, sent); d >= 0 {
		return mismatch(sent, got, d)
	}
	if len(got) > len(sent) {
		return longer(sent, got)
	}
	if len(got) < len(sent) {
		return short(int64(len(got)), int64(len(sent)), o, patience)
	}
	return ended(o, patience)
}

// mismatch explains a reply whose byte d differs from what was sent.
func mismatch(sent, got []byte, d int) error {
	if err := shape(sent, got); err != nil {
		return err
	}
	// A result buffer made with make([]byte, 4096) and appended to: the
	// echo comes after a run of zero bytes.
	zs, zg := leadingZeros(sent), leadingZeros(got)
	if k := zg - zs; k > 0 && len(got[k:]) > len(sent) && wholeBuffers(sent, got[k:]) {
		// Both bugs of the classic first attempt at once.
		return errZerosWholeBuffer(int64(k), int64(len(got)-k-len(sent)))
	} else if k > 0 && pattern.FirstDiff(got[k:], sent) < 0 {
		return errZeroPrefix(int64(k))
	} else if k >= 512 && k%512 == 0 {
		// A buffer's worth of zeros, then more wrong: name the zeros first.
		return fmt.Errorf("reply starts with %d zero bytes that were never sent, and what follows is not what was sent either (%s came back, %s sent)", k, count(len(got), "byte"), count(len(sent), "byte"))
	}
	if len(got) > len(sent) && wholeBuffers(sent, got) {
		return errWholeBuffer(len(got) - len(sent))
	}
	m := pattern.Diff(got, sent, d, 0)
	if len(got) != len(sent) {
		return fmt.Errorf("%w (%s came back, %s sent)", m, count(len(got), "byte"), count(len(sent), "byte"))
	}
	return m
}

// longer explains a reply that is what was sent followed by more.
func longer(sent, got []byte) error {
	extra := len(got) - len(sent)
	if err := shape(sent, got); err != nil {
		return err
	}
	switch {
	case extra >= maxExtra:
		return fmt.Errorf("reply goes on past the %d bytes that were sent (stopped reading %d bytes later)", len(sent), extra)
	case leadingZeros(got[:extra]) == extra && bytes.Equal(got[extra:], sent):
		return errZeroPrefix(int64(extra))
	case wholeBuffers(sent, got):
		return errWholeBuffer(extra)
	}
	return fmt.Errorf("reply is %s longer than what was sent (%s came back, %s sent)", count(extra, "byte"), count(len(got), "byte"), count(len(sent), "byte"))
}

// wholeBufferBug names the bug behind a reply padded to whole buffers.
const wholeBufferBug = "the server wrote its whole buffer, not the bytes it read"

func errWholeBuffer(extra int) error {
	return fmt.Errorf("reply is %d bytes longer than what was sent: %s", extra, wholeBufferBug)
}

// errZeroPrefix is a reply that starts with k zero bytes never sent: a
// result buffer made with make([]byte, k) and appended to.
func errZeroPrefix(k int64) error {
	return fmt.Errorf("reply starts with %d zero bytes that were never sent", k)
}

// errZerosWholeBuffer is the classic first attempt's reply: k zero bytes,
// then the echo padded to whole buffers, extra bytes more than was sent.
func errZerosWholeBuffer(k, extra int64) error {
	return fmt.Errorf("reply starts with %d zero bytes that were never sent, then %d bytes more than was sent: %s", k, extra, wholeBufferBug)
}

// wholeBuffers reports whether got looks like the classic bug of writing
// the whole read buffer after every read: a series of blocks of one buffer
// size, each starting with the next bytes that were sent and padded with
// stale bytes to the end.
func wholeBuffers(sent, got []byte) bool {
	for size := 512; size <= 64<<10; size *= 2 {
		if len(got) >= size && len(got)%size == 0 {
			budget := 10000 // stale bytes may match what comes next; bound the search
			if blocksFrom(sent, got, size, 0, 0, &budget) {
				return true
			}
		}
	}
	return false
}

// blocksFrom reports whether got[b:] is blocks of size bytes, each starting
// with one read of sent[off:] in order, covering all of it.
func blocksFrom(sent, got []byte, size, b, off int, budget *int) bool {
	*budget--
	if off == len(sent) || b == len(got) || *budget < 0 {
		return off == len(sent) && b == len(got)
	}
	block := got[b : b+size]
	n := pattern.FirstDiff(block, sent[off:])
	if n < 0 {
		n = min(size, len(sent)-off)
	}
	// The read may have been shorter than the match, if stale bytes
	// happen to equal what was sent next.
	for ; n >= 1; n-- {
		if blocksFrom(sent, got, size, b+size, off+n, budget) {
			return true
		}
	}
	return false
}

// short explains a session that ended with fewer bytes back than sent.
func short(got, sent int64, o outcome, patience time.Duration) error {
	switch {
	case o.sinkErr != nil:
		return o.sinkErr
	}
	if err := earlyClose(got, sent, o); err != nil {
		return err
	}
	switch {
	case !o.eofAt.IsZero() && got == 0:
		return fmt.Errorf("connection closed after 0 of %d bytes%w", sent, silent(errClosedEmpty))
	case !o.eofAt.IsZero():
		return fmt.Errorf("connection closed after %d of %d bytes", got, sent)
	case isReset(o.readErr) && got == 0:
		return fmt.Errorf("connection reset after 0 of %d bytes%w", sent, silent(errClosedEmpty))
	case isReset(o.readErr):
		return fmt.Errorf("connection reset after %d of %d bytes", got, sent)
	case errors.Is(o.readErr, os.ErrDeadlineExceeded) && !o.halfClosed.IsZero():
		if got == 0 {
			return fmt.Errorf("nothing came back, and nothing %v after half-close", patience)
		}
		return fmt.Errorf("only %d of %d bytes came back, then nothing for %v after half-close", got, sent, patience)
	case o.writeErr != nil && !errors.Is(o.writeErr, os.ErrDeadlineExceeded) && !isContextErr(o.writeErr):
		return fmt.Errorf("sending failed after %d of %d bytes came back: %v", got, sent, o.writeErr)
	case isContextErr(o.readErr):
		return fmt.Errorf("%d of %d bytes came back", got, sent)
	case o.readErr != nil:
		return fmt.Errorf("%d of %d bytes came back: %w", got, sent, o.readErr)
	}
	return fmt.Errorf("only %d of %d bytes came back", got, sent)
}

// ended explains how a session with a complete echo failed to end, or
// returns nil if the server closed it cleanly.
func ended(o outcome, patience time.Duration) error {
	switch {
	case !o.eofAt.IsZero():
		return nil
	case o.writeErr != nil:
		return fmt.Errorf("the echo was complete but sending failed: %v", o.writeErr)
	case isReset(o.readErr):
		return errors.New("connection reset after the complete echo instead of a clean close: a reset can destroy data still in flight")
	case errors.Is(o.readErr, os.ErrDeadlineExceeded) && !o.halfClosed.IsZero():
		return errNeverCloses(patience)
	case isContextErr(o.readErr) && !o.halfClosed.IsZero():
		return errors.New("no EOF after half-close")
	case o.readErr != nil && !isContextErr(o.readErr):
		return fmt.Errorf("the echo was complete but no EOF followed: %w", o.readErr)
	}
	return errors.New("the echo was complete but no EOF followed")
}

func isContextErr(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func leadingZeros(b []byte) int {
	n := len(b) - len(bytes.TrimLeft(b, "\x00"))
	return n
}
