package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// TCPChecks returns the full TCP suite, in the order Run runs it.
func TCPChecks() []Check {
	return []Check{
		{Name: "smoke", Deadline: 20 * time.Second, Func: checkSmoke,
			Doc: "the Protohackers Smoke Test: 5 clients at once send random binary data in pieces with pauses, half-close, and get exactly it back, then EOF"},
		{Name: "all-bytes", Deadline: 10 * time.Second, Func: checkAllBytes,
			Doc: "every byte value 0-255 comes back unchanged"},
		{Name: "text", Deadline: 10 * time.Second, Func: checkText,
			Doc: "a short text message comes back unchanged"},
		{Name: "streaming", Deadline: 20 * time.Second, Func: checkStreaming,
			Doc: "each piece is echoed before the next is sent, without a half-close"},
		{Name: "large", Deadline: 60 * time.Second, Func: checkLarge,
			Doc: "32 MiB written and read at the same time come back verified"},
		{Name: "empty", Deadline: 10 * time.Second, Func: checkEmpty,
			Doc: "a half-close at once gets EOF with nothing before it"},
		{Name: "close-after-eof", Deadline: 20 * time.Second, Func: checkCloseAfterEOF,
			Doc: "after a half-close with data still in flight, the server sends it all back and closes"},
		{Name: "slow-client", Deadline: 20 * time.Second, Func: checkSlowClient,
			Doc: "a client that sends one byte at a time gets every byte back"},
		{Name: "slow-reader", Deadline: 30 * time.Second, Func: checkSlowReader,
			Doc: "a client that half-closes and then reads slowly loses nothing before EOF"},
		{Name: "many-clients", Deadline: 30 * time.Second, Func: checkManyClients,
			Doc: "200 clients connected at once each get their echo"},
		{Name: "resets", Deadline: 20 * time.Second, Func: checkResets,
			Doc: "after clients reset their connections mid-session, a new session still works"},
		{Name: "ipv6", Deadline: 10 * time.Second, Func: checkIPv6, Skip: skipIPv6,
			Doc: "echo over IPv6 (only when the address is IPv6)"},
	}
}

const smokeClients = 5

// smokePlan is what client i of the smoke check sends: random binary data
// of a size that differs per client, in several writes of random sizes with
// short pauses between them.
func smokePlan(i int) plan {
	sizes := []int{1, 1000, 10 << 10, 100<<10 + 17, 300 << 10}
	size := sizes[i%len(sizes)]
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	data := make([]byte, size)
	pattern.NewStream(uint64(1000 + i)).Read(data)
	var p plan
	for len(data) > 0 {
		n := min(len(data), 1+rng.IntN(max(size/4, 1)))
		p.chunks = append(p.chunks, data[:n])
		data = data[n:]
	}
	pauses := make([]time.Duration, len(p.chunks))
	for j := range pauses {
		pauses[j] = time.Duration(5+rng.IntN(20)) * time.Millisecond
	}
	p.pause = func(j int) time.Duration { return pauses[j] }
	return p
}

func checkSmoke(ctx context.Context, t *Target) (string, error) {
	return t.concurrentSessions(ctx, smokeClients, smokePlan)
}

// concurrentSessions connects n clients first, then runs plan(i) on client
// i, all at once, and judges each.
func (t *Target) concurrentSessions(ctx context.Context, n int, planFor func(i int) plan) (string, error) {
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		c, stop, err := t.dial(ctx, "tcp")
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, n, err)
		}
		defer c.Close()
		defer stop()
		conns[i] = c
	}
	errs := make([]error, n)
	var total int64
	var writes int
	var wg sync.WaitGroup
	for i, c := range conns {
		p := planFor(i)
		total += p.size()
		writes += len(p.chunks)
		wg.Go(func() {
			o := talk(ctx, c, p, nil, t.Patience)
			errs[i] = judge(p.bytes(), o, t.Patience)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, n, err)
		}
	}
	return fmt.Sprintf("%d clients at once, %s in %d writes, exact echo then EOF", n, size(total), writes), nil
}

func allBytes() []byte {
	b := make([]byte, 512)
	for i := range 256 {
		b[i] = byte(i)
		b[511-i] = byte(i)
	}
	return b
}

func checkAllBytes(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp", plan{chunks: [][]byte{allBytes()}}); err != nil {
		return "", err
	}
	return "0x00-0xff up and down, 512 bytes", nil
}

const textMessage = "Ground Control to Major Tom: commencing countdown, engines on.\n"

func checkText(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp", plan{chunks: [][]byte{[]byte(textMessage)}}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes of text", len(textMessage)), nil
}

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
		return "", fmt.Errorf("no EOF %v after half-close: the server did not close the connection", t.Patience)
	case err != nil:
		return "", fmt.Errorf("after half-close: %w", err)
	}
	return fmt.Sprintf("%d pieces, each echoed before the next; slowest echo %v", len(sizes), slowest.Round(10*time.Microsecond)), nil
}

// streamingStall explains why the echo of piece i (of n) did not come back
// whole: it half-closes to see whether the server was holding it back.
func streamingStall(ctx context.Context, c *net.TCPConn, t *Target, i, n int, chunk, got []byte, sent int, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("piece %d of %d: connection closed after %d of %d bytes", i+1, n, sent-len(chunk)+len(got), sent)
		}
		return fmt.Errorf("piece %d of %d: %w", i+1, n, err)
	}
	if ctx.Err() != nil {
		return err
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
	o, verified := streamPattern(ctx, c, largeSize, 64<<10, t.Patience)
	if err := judgeStream(o, verified, largeSize, t.Patience); err != nil {
		return "", err
	}
	el := time.Since(start)
	return fmt.Sprintf("%s each way in %v (%s/s), verified", size(largeSize), el.Round(time.Millisecond), size(int64(float64(largeSize)/el.Seconds()))), nil
}

// streamPattern sends n bytes of a pattern in writes of chunk bytes,
// half-closes, and verifies the reply as it arrives.
func streamPattern(ctx context.Context, c *net.TCPConn, n int64, chunk int, patience time.Duration) (outcome, int64) {
	const seed = 862
	data := make([]byte, n)
	pattern.NewStream(seed).Read(data)
	var p plan
	for off := int64(0); off < n; off += int64(chunk) {
		p.chunks = append(p.chunks, data[off:min(n, off+int64(chunk))])
	}
	v := pattern.NewVerifier(io.LimitReader(pattern.NewStream(seed), n))
	o := talk(ctx, c, p, v, patience)
	return o, v.Verified()
}

// judgeStream explains what went wrong with a verified stream of sent bytes
// of which verified came back right.
func judgeStream(o outcome, verified, sent int64, patience time.Duration) error {
	var m *pattern.Mismatch
	switch {
	case errors.As(o.sinkErr, &m):
		return m
	case errors.Is(o.sinkErr, pattern.ErrTooLong):
		return fmt.Errorf("reply is longer than the %d bytes sent: %w", sent, o.sinkErr)
	case verified < sent:
		o.sinkErr = nil
		return short(verified, sent, o, patience)
	}
	return ended(o, patience)
}

func checkEmpty(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp", plan{}); err != nil {
		return "", err
	}
	return "EOF and nothing else", nil
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
		return "", fmt.Errorf("the echo of a first %d-byte piece: only %d bytes came back: %w", len(first), k, err)
	}
	setReadDeadline(ctx, c, 0)

	rest := make([]byte, 256<<10)
	pattern.NewStream(7).Read(rest)
	o := talk(ctx, c, plan{chunks: [][]byte{rest}}, nil, t.Patience)
	// Judge the session as a whole, so that a bug in the first echo shows
	// its real shape.
	all := append(append([]byte(nil), first...), rest...)
	o.got = append(got, o.got...)
	if len(o.got) < len(all) && !o.halfClosed.IsZero() && o.eofAt.After(o.halfClosed) && pattern.FirstDiff(o.got, all) < 0 {
		return "", fmt.Errorf("the connection was closed as soon as the client half-closed, before the echo arrived (%d of %d bytes came back): the server, or something in the path (a proxy such as ngrok), turns a half-close into a full close", len(o.got)-len(first), len(rest))
	}
	if err := judge(all, o, t.Patience); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s in flight at the half-close came back, then EOF after %v", size(int64(len(rest))), o.eofAt.Sub(o.halfClosed).Round(time.Millisecond)), nil
}

func checkSlowClient(ctx context.Context, t *Target) (string, error) {
	msg := []byte("one byte at a time, 0123456789\n")
	p := plan{pause: func(int) time.Duration { return 3 * time.Millisecond }}
	for i := range msg {
		p.chunks = append(p.chunks, msg[i:i+1])
	}
	if err := t.session(ctx, "tcp", p); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes in %d writes", len(msg), len(msg)), nil
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
	c.SetReadBuffer(32 << 10)

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

	v := pattern.NewVerifier(io.LimitReader(pattern.NewStream(99), n))
	buf := make([]byte, 8<<10)
	var o outcome
	for {
		setReadDeadline(ctx, c, t.Patience)
		k, err := c.Read(buf)
		if k > 0 {
			if _, werr := v.Write(buf[:k]); werr != nil {
				o.sinkErr = werr
				break
			}
		}
		if err == io.EOF {
			o.eofAt = time.Now()
			break
		}
		if err != nil {
			o.readErr = err
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
	if err := judgeStream(o, v.Verified(), n, t.Patience); err != nil {
		if !o.eofAt.IsZero() && v.Verified() < n {
			return "", fmt.Errorf("%v: the server closed before writing back everything it had read", err)
		}
		return "", err
	}
	return fmt.Sprintf("%s read 8 KiB at a time after the half-close, all of it, then EOF", size(n)), nil
}

const manyClients = 200

// checkManyClients keeps manyClients connected at once, each waiting for its
// own echo before anyone half-closes: a server that serves one client at a
// time answers only the first.
func checkManyClients(ctx context.Context, t *Target) (string, error) {
	conns := make([]*net.TCPConn, manyClients)
	stops := make([]func() bool, manyClients)
	errs := make([]error, manyClients)
	var wg sync.WaitGroup
	// Connect in parallel, a few at a time, so a distant server is not
	// dialed one round trip after another.
	sem := make(chan struct{}, 32)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], stops[i], errs[i] = t.dial(ctx, "tcp")
		})
	}
	wg.Wait()
	defer func() {
		for i, c := range conns {
			if c != nil {
				stops[i]()
				c.Close()
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, manyClients, err)
		}
	}

	msg := func(i int) []byte {
		return fmt.Appendf(nil, "client %d of %d, all connected at once\n", i+1, manyClients)
	}
	deadline := readDeadline(ctx, t.Patience)
	echoed := make([]bool, manyClients)
	for i, c := range conns {
		wg.Go(func() {
			m := msg(i)
			c.SetDeadline(deadline)
			if _, err := c.Write(m); err != nil {
				errs[i] = fmt.Errorf("send: %w", err)
				return
			}
			got := make([]byte, len(m))
			if _, err := io.ReadFull(c, got); err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					errs[i] = err
				}
				return
			}
			if d := pattern.FirstDiff(got, m); d >= 0 {
				errs[i] = &pattern.Mismatch{Offset: int64(d), Got: got[d], Want: m[d]}
				return
			}
			echoed[i] = true
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, manyClients, err)
		}
	}
	ok := 0
	for _, e := range echoed {
		if e {
			ok++
		}
	}
	switch {
	case ok == 0:
		return "", fmt.Errorf("none of %d clients connected at once got its echo within %v (a server that buffers until EOF fails here too: see the streaming check)", manyClients, t.Patience)
	case ok == 1:
		return "", fmt.Errorf("only 1 of %d clients connected at once got its echo within %v: the server serves one client at a time", manyClients, t.Patience)
	case ok < manyClients:
		return "", fmt.Errorf("only %d of %d clients connected at once got their echo within %v: the server serves at most %d clients at a time", ok, manyClients, t.Patience, ok)
	}

	// Now everyone half-closes; each must see EOF.
	deadline = readDeadline(ctx, t.Patience)
	for i, c := range conns {
		wg.Go(func() {
			c.SetDeadline(deadline)
			if err := c.CloseWrite(); err != nil {
				errs[i] = fmt.Errorf("half-close: %w", err)
				return
			}
			rest, err := io.ReadAll(c)
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				errs[i] = fmt.Errorf("no EOF %v after half-close: the server did not close the connection", t.Patience)
			case err != nil:
				errs[i] = fmt.Errorf("after half-close: %w", err)
			case len(rest) > 0:
				m := msg(i)
				errs[i] = longer(m, append(m, rest...))
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, manyClients, err)
		}
	}
	return fmt.Sprintf("%d clients connected at once, each echoed, then EOF", manyClients), nil
}

const resetClients = 20

// checkResets has clients vanish with a reset, some before sending and some
// with their echo unread, then checks that a normal session still works: a
// server that treats a reset as fatal dies here.
func checkResets(ctx context.Context, t *Target) (string, error) {
	p := plan{pause: func(int) time.Duration { return 20 * time.Millisecond }}
	for _, w := range strings.Fields("still alive after the resets ?") {
		p.chunks = append(p.chunks, []byte(w+" "))
	}
	// First the same session without resets, so that a failure below is
	// the resets' doing.
	if err := t.session(ctx, "tcp", plan{chunks: p.chunks}); err != nil {
		return "", err
	}
	junk := make([]byte, 64<<10)
	pattern.NewStream(5).Read(junk)
	for i := range resetClients {
		c, stop, err := t.dial(ctx, "tcp")
		if err != nil {
			if i == 0 {
				return "", err
			}
			return "", fmt.Errorf("after %d of %d clients reset their connections, a new session failed: %w", i, resetClients, err)
		}
		if i%2 == 1 {
			c.SetWriteDeadline(time.Now().Add(t.Patience))
			c.Write(junk)
		}
		// Linger 0: close sends a reset instead of a FIN.
		c.SetLinger(0)
		stop()
		c.Close()
	}
	if err := t.session(ctx, "tcp", p); err != nil {
		return "", fmt.Errorf("after %d of %d clients reset their connections, a new session failed: %w", resetClients, resetClients, err)
	}
	return fmt.Sprintf("%d clients reset their connections, then a new session worked", resetClients), nil
}

// skipIPv6 skips the ipv6 check unless the target's host is an IPv6
// address or a name with one.
func skipIPv6(t *Target) string {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return err.Error()
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return host + " is an IPv4 address"
		}
		return ""
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return fmt.Sprintf("cannot look up %s: %v", host, err)
	}
	for _, ip := range ips {
		if ip.To4() == nil {
			return ""
		}
	}
	return host + " has no IPv6 address"
}

func checkIPv6(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp6", plan{chunks: [][]byte{[]byte(textMessage), allBytes()}}); err != nil {
		return "", err
	}
	return "text and all byte values over IPv6", nil
}

// size formats n bytes for people.
func size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
