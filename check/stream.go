package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// The checks in this file are about timing and flow: echo as data arrives,
// backpressure both ways, and what happens at the half-close.

// checkStreaming sends pieces one by one and waits for each echo before the
// next, never half-closing until the end: RFC 862 echoes data as it
// arrives, and a client such as a line-by-line chat depends on it.
func checkStreaming(ctx context.Context, t *Target) (string, error) {
	c, stop, err := t.dial(ctx, "tcp")
	if err != nil {
		return "", err
	}
	defer c.Close()
	defer stop()

	sizes := []int{1, 12, 100, 1000, 3, 4000, 20000, 7}
	src := pattern.NewStream(42)
	var slowest time.Duration
	var sent int
	var sentAll, gotAll []byte
	for i, n := range sizes {
		chunk := make([]byte, n)
		src.Read(chunk)
		start := time.Now()
		if _, err := c.Write(chunk); err != nil {
			return "", fmt.Errorf("piece %d of %d: send: %w", i+1, len(sizes), err)
		}
		sent += n
		setReadDeadline(ctx, c, t.Patience)
		got := make([]byte, n)
		k, err := io.ReadFull(c, got)
		if err != nil {
			return "", streamingStall(ctx, c, t, i, len(sizes), chunk, got[:k], sent, err)
		}
		sentAll = append(sentAll, chunk...)
		gotAll = append(gotAll, got...)
		if d := pattern.FirstDiff(gotAll, sentAll); d >= 0 {
			// Whatever else has arrived may show the shape of the bug.
			setReadDeadline(ctx, c, min(t.Patience, 200*time.Millisecond))
			more, _ := io.ReadAll(io.LimitReader(c, maxExtra))
			gotAll = append(gotAll, more...)
			return "", fmt.Errorf("piece %d of %d: %w", i+1, len(sizes), mismatch(sentAll, gotAll, d))
		}
		slowest = max(slowest, time.Since(start))
	}
	if err := c.CloseWrite(); err != nil {
		return "", fmt.Errorf("half-close: %w", err)
	}
	setReadDeadline(ctx, c, t.Patience)
	extra, err := io.ReadAll(c)
	switch {
	case len(extra) > 0:
		return "", fmt.Errorf("after the echo of every piece, %d more bytes came back that were never sent", len(extra))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "", errNeverCloses(t.Patience)
	case err != nil:
		return "", fmt.Errorf("after half-close: %w", err)
	}
	return fmt.Sprintf("%d pieces, each echoed before the next; slowest echo %v", len(sizes), slowest.Round(10*time.Microsecond)), nil
}

// streamingStall explains why the echo of piece i (of n) did not come back
// whole: it half-closes to see whether the server was holding it back.
func streamingStall(ctx context.Context, c conn, t *Target, i, n int, chunk, got []byte, sent int, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("piece %d of %d: connection closed after %d of %d bytes", i+1, n, sent-len(chunk)+len(got), sent)
		}
		return fmt.Errorf("piece %d of %d: %w", i+1, n, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("piece %d of %d: %d of its %d bytes came back", i+1, n, len(got), len(chunk))
	}
	// Does the server wait for the end of a line? Send one and see.
	setReadDeadline(ctx, c, t.Patience)
	if _, err := c.Write([]byte("\n")); err == nil {
		more := make([]byte, 1)
		if k, _ := io.ReadFull(c, more); k > 0 {
			if i == 0 && len(got) == 0 {
				return fmt.Errorf("no echo of a %d-byte message until a newline was sent: the server buffers until a newline (RFC 862 echoes as data arrives, lines or not)", len(chunk))
			}
			return fmt.Errorf("piece %d of %d: the echo of its %d bytes stopped after %d and resumed only when a newline was sent: the server buffers until a newline (RFC 862 echoes as data arrives, lines or not)", i+1, n, len(chunk), len(got))
		}
	}
	// Did the server hold the echo until EOF? Half-close and see.
	c.CloseWrite()
	setReadDeadline(ctx, c, t.Patience)
	more := make([]byte, 1)
	k, _ := io.ReadFull(c, more)
	switch {
	case k > 0 && i == 0 && len(got) == 0:
		return errors.New("first reply byte came only after half-close: the server buffers until EOF (RFC 862 echoes as data arrives)")
	case k > 0:
		return fmt.Errorf("piece %d of %d: the echo of its %d bytes stopped after %d and resumed only after half-close: the server holds data back until EOF (RFC 862 echoes as data arrives)", i+1, n, len(chunk), len(got))
	case i == 0 && len(got) == 0:
		return fmt.Errorf("no echo of a %d-byte message within %v, nor after half-close: the server does not echo", len(chunk), t.Patience)
	}
	return fmt.Errorf("piece %d of %d: only %d of its %d bytes came back within %v", i+1, n, len(got), len(chunk), t.Patience)
}

// largeSize is how much the large check sends: enough to pass every buffer
// between the client and the server many times over.
const largeSize = 32 << 20

func checkLarge(ctx context.Context, t *Target) (string, error) {
	c, stop, err := t.dial(ctx, "tcp")
	if err != nil {
		return "", err
	}
	defer c.Close()
	defer stop()
	start := time.Now()
	o, s := streamPattern(ctx, c, largeSize, 64<<10, t.Patience)
	if err := judgeStream(o, s, largeSize, t.Patience); err != nil {
		return "", err
	}
	el := time.Since(start)
	return fmt.Sprintf("%s each way in %v (%s/s), verified", size(largeSize), el.Round(time.Millisecond), size(int64(float64(largeSize)/el.Seconds()))), nil
}

// streamPattern sends n bytes of a pattern in writes of chunk bytes,
// half-closes, and verifies the reply as it arrives.
func streamPattern(ctx context.Context, c conn, n int64, chunk int, patience time.Duration) (outcome, *streamSink) {
	const seed = 862
	data := make([]byte, n)
	src := pattern.NewStream(seed)
	var p plan
	for off := int64(0); off < n; off += int64(chunk) {
		// Making 32 MiB of pattern takes seconds on a slow or busy
		// machine (the race detector): stop once ctx has ended, so the
		// check keeps its deadline. talk then fails at once, and the
		// reply is judged short of the n bytes.
		if ctx.Err() != nil {
			break
		}
		piece := data[off:min(n, off+int64(chunk))]
		src.Read(piece)
		p.chunks = append(p.chunks, piece)
	}
	s := &streamSink{v: pattern.NewVerifier(io.LimitReader(pattern.NewStream(seed), n))}
	o := talk(ctx, c, p, s, patience)
	return o, s
}

// streamSink verifies a reply as it arrives. After a difference that is a
// zero byte it reads on, counting, so that a reply padded with a buffer's
// zeros is named as such rather than by its first byte.
type streamSink struct {
	v       *pattern.Verifier
	err     error // the verifier's error, if any
	zeros   int64 // the run of zero bytes from the first difference
	inZeros bool
	total   int64 // bytes of the reply
}

func (s *streamSink) Write(p []byte) (int, error) {
	s.total += int64(len(p))
	if s.err == nil {
		n, err := s.v.Write(p)
		if err == nil {
			return len(p), nil
		}
		s.err = err
		var m *pattern.Mismatch
		if !errors.As(err, &m) || m.Got != 0 {
			return n, err
		}
		s.inZeros, p = true, p[n:]
	}
	if s.inZeros {
		k := leadingZeros(p)
		s.zeros += int64(k)
		s.inZeros = k == len(p)
		if !s.inZeros && s.zeros < minZeroRun {
			return 0, s.err // a stray zero, not padding: stop here
		}
	}
	return len(p), nil
}

// minZeroRun is the shortest run of zero bytes never sent that is taken for
// a buffer's padding.
const minZeroRun = 64

// zeroRun explains a reply whose first difference m starts a run of zero
// bytes never sent.
func (s *streamSink) zeroRun(m *pattern.Mismatch, sent int64) error {
	extra := s.total - s.zeros - sent
	switch {
	case m.Offset == 0 && extra > 0:
		return errZerosWholeBuffer(s.zeros, extra)
	case m.Offset == 0:
		return errZeroPrefix(s.zeros)
	case extra > 0:
		return fmt.Errorf("byte %d: %d zero bytes that were never sent, and %d bytes more than was sent in all: %s", m.Offset, s.zeros, s.total-sent, wholeBufferBug)
	}
	return fmt.Errorf("byte %d: %d zero bytes that were never sent", m.Offset, s.zeros)
}

// judgeStream explains what went wrong with a verified stream of sent bytes
// of which verified came back right.
func judgeStream(o outcome, s *streamSink, sent int64, patience time.Duration) error {
	var m *pattern.Mismatch
	verified := s.v.Verified()
	if o.sinkErr == nil {
		o.sinkErr = s.err
	}
	switch {
	case errors.As(o.sinkErr, &m):
		if err := streamShape(m); err != nil {
			return err
		}
		if s.zeros >= minZeroRun {
			return s.zeroRun(m, sent)
		}
		return m
	case errors.Is(o.sinkErr, pattern.ErrTooLong):
		return fmt.Errorf("reply is longer than the %d bytes sent: %w", sent, o.sinkErr)
	case verified < sent:
		o.sinkErr = nil
		return short(verified, sent, o, patience)
	}
	return ended(o, patience)
}

// checkCloseAfterEOF sends a piece and waits for its echo (so the path
// works), then sends more and half-closes at once: the server must send all
// of it back, then close.
func checkCloseAfterEOF(ctx context.Context, t *Target) (string, error) {
	c, stop, err := t.dial(ctx, "tcp")
	if err != nil {
		return "", err
	}
	defer c.Close()
	defer stop()
	first := []byte("first piece, echoed before the half-close\n")
	if _, err := c.Write(first); err != nil {
		return "", fmt.Errorf("send: %w", err)
	}
	setReadDeadline(ctx, c, t.Patience)
	got := make([]byte, len(first))
	if k, err := io.ReadFull(c, got); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			return "", streamingStall(ctx, c, t, 0, 1, first, got[:k], len(first), err)
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("%d of the %d bytes of a first piece came back", k, len(first))
		}
		return "", fmt.Errorf("%d of the %d bytes of a first piece came back: %w", k, len(first), err)
	}
	setReadDeadline(ctx, c, 0)

	rest := make([]byte, 256<<10)
	pattern.NewStream(7).Read(rest)
	o := talk(ctx, c, plan{chunks: [][]byte{rest}}, nil, t.Patience)
	// Judge the session as a whole, so that a bug in the first echo shows
	// its real shape.
	all := append(append([]byte(nil), first...), rest...)
	o.got = append(got, o.got...)
	if err := judge(all, o, t.Patience); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s in flight at the half-close came back, then EOF after %v", size(int64(len(rest))), o.eofAt.Sub(o.halfClosed).Round(time.Millisecond)), nil
}

// checkSlowReader sends more than the socket buffers hold, half-closes, and
// only then reads, slowly: a server that drops what it could not write yet
// when it sees EOF loses data here.
func checkSlowReader(ctx context.Context, t *Target) (string, error) {
	const n = 2 << 20
	c, stop, err := t.dial(ctx, "tcp")
	if err != nil {
		return "", err
	}
	defer c.Close()
	defer stop()
	// A small receive buffer keeps the reply in the server's hands.
	if tc := tcpOf(c); tc != nil {
		tc.SetReadBuffer(32 << 10)
	}

	data := make([]byte, n)
	pattern.NewStream(99).Read(data)
	type result struct {
		halfClosed time.Time
		err        error
	}
	wrote := make(chan result, 1)
	go func() {
		if _, err := c.Write(data); err != nil {
			wrote <- result{err: err}
			return
		}
		err := c.CloseWrite()
		wrote <- result{halfClosed: time.Now(), err: err}
	}()
	// Start reading when the server has taken everything or stopped taking
	// it; a server with backpressure stops when its writes block.
	var w result
	var done bool
	select {
	case w = <-wrote:
		done = true
	case <-time.After(300 * time.Millisecond):
	case <-ctx.Done():
	}

	s := &streamSink{v: pattern.NewVerifier(io.LimitReader(pattern.NewStream(99), n))}
	buf := make([]byte, 8<<10)
	var o outcome
	for {
		setReadDeadline(ctx, c, t.Patience)
		k, err := c.Read(buf)
		if k > 0 {
			o.lastData = time.Now()
			if _, werr := s.Write(buf[:k]); werr != nil {
				o.sinkErr = werr
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
		if !sleep(ctx, time.Millisecond) {
			o.readErr = ctx.Err()
			break
		}
	}
	if errors.Is(o.readErr, os.ErrDeadlineExceeded) && ctx.Err() != nil {
		o.readErr = ctx.Err()
	}
	if !done {
		c.SetWriteDeadline(time.Unix(1, 0))
		w = <-wrote
	}
	o.halfClosed, o.writeErr = w.halfClosed, w.err
	if err := judgeStream(o, s, n, t.Patience); err != nil {
		var half *closedAtHalfClose
		if !o.eofAt.IsZero() && s.err == nil && s.v.Verified() < n && !errors.As(err, &half) {
			return "", fmt.Errorf("%v: the server closed before writing back everything it had read", err)
		}
		return "", err
	}
	return fmt.Sprintf("%s read 8 KiB at a time after the half-close, all of it, then EOF", size(n)), nil
}
