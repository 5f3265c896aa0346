package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// The checks in this file run many clients: at once, or one after another
// with resets in between.

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

// checkFiveAtOnce connects five clients, sends on all of them, and
// half-closes all but the first, which it holds open until the other four
// have their echo and EOF: a server that serves one client at a time is
// busy with the first and never answers the others. A server that holds
// the echo until EOF passes, as the Smoke Test allows it to.
func checkFiveAtOnce(ctx context.Context, t *Target) (string, error) {
	conns := make([]conn, smokeClients)
	for i := range conns {
		c, stop, err := t.dial(ctx, "tcp")
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, smokeClients, err)
		}
		defer c.Close()
		defer stop()
		conns[i] = c
	}
	// The first client's message is small enough to sit in the socket
	// buffers while nobody reads its echo.
	first := []byte("client 1 of 5, held open while the others are served\n")
	if _, err := conns[0].Write(first); err != nil {
		return "", fmt.Errorf("client 1 of %d: send: %w", smokeClients, err)
	}
	errs := make([]error, smokeClients)
	silent := make([]bool, smokeClients)
	var total int64 = int64(len(first))
	var wg sync.WaitGroup
	for i := 1; i < smokeClients; i++ {
		p := smokePlan(i)
		total += p.size()
		wg.Go(func() {
			o := talk(ctx, conns[i], p, nil, t.Patience)
			errs[i] = judge(p.bytes(), o, t.Patience)
			silent[i] = len(o.got) == 0 && errors.Is(o.readErr, os.ErrDeadlineExceeded)
		})
	}
	wg.Wait()
	if silent[1] && silent[2] && silent[3] && silent[4] {
		return "", whySilent(ctx, conns[0], t.Patience)
	}
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, smokeClients, err)
		}
	}
	c := conns[0]
	halfClosed := time.Now()
	if err := c.CloseWrite(); err != nil {
		return "", fmt.Errorf("client 1 of %d: half-close: %w", smokeClients, err)
	}
	setReadDeadline(ctx, c, t.Patience)
	got, err := io.ReadAll(io.LimitReader(c, int64(len(first))+maxExtra))
	o := outcome{got: got, readErr: err, readAt: time.Now(), halfClosed: halfClosed}
	if err == nil {
		o.eofAt = time.Now()
	}
	if err := judge(first, o, t.Patience); err != nil {
		return "", fmt.Errorf("client 1 of %d, after the others: %w", smokeClients, err)
	}
	return fmt.Sprintf("%d clients at once, %s, exact echo then EOF, the first held open until the others were done", smokeClients, size(total)), nil
}

// whySilent explains four clients that got nothing back, by what the
// fifth, held open, got: a server that echoes nothing to anyone is told
// so first, rather than sent chasing concurrency.
func whySilent(ctx context.Context, first conn, patience time.Duration) error {
	// Client 1 wrote long before the others: what it has is there now.
	setReadDeadline(ctx, first, 100*time.Millisecond)
	var b [1]byte
	if n, _ := first.Read(b[:]); n > 0 {
		return fmt.Errorf("clients 2 to %d got no reply while client 1 stayed open: the server serves one client at a time (the Smoke Test connects %d at once)", smokeClients, smokeClients)
	}
	if err := first.CloseWrite(); err == nil {
		setReadDeadline(ctx, first, patience)
		if n, _ := first.Read(b[:]); n > 0 {
			return fmt.Errorf("clients 2 to %d got no reply while client 1 stayed open, and client 1 got its echo only when it half-closed: the server serves one client at a time, and holds the echo until EOF (the Smoke Test connects %d at once)", smokeClients, smokeClients)
		}
	}
	return fmt.Errorf("none of %d clients got a single byte back, even after its half-close: the server does not echo (does it write back what it reads?)", smokeClients)
}

const manyClients = 200

// checkManyClients keeps manyClients connected at once, each waiting for its
// own echo before anyone half-closes: a server that serves one client at a
// time answers only the first.
func checkManyClients(ctx context.Context, t *Target) (string, error) {
	conns := make([]conn, manyClients)
	stops := make([]func() bool, manyClients)
	errs := make([]error, manyClients)
	// How long each sat idle between connecting and sending: a path that
	// closes idle connections closes those that sat longest.
	connected := make([]time.Time, manyClients)
	idle := make([]time.Duration, manyClients)
	var wg sync.WaitGroup
	// Connect in parallel, a few at a time, so a distant server is not
	// dialed one round trip after another.
	sem := make(chan struct{}, 32)
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], stops[i], errs[i] = t.dial(ctx, "tcp")
			connected[i] = time.Now()
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
		// A reset as it connects may be a connection limit: judged with
		// the echoes below.
		if err != nil && !isReset(err) {
			return "", fmt.Errorf("client %d of %d: %w", i+1, manyClients, err)
		}
	}

	msg := func(i int) []byte {
		return fmt.Appendf(nil, "client %d of %d, all connected at once\n", i+1, manyClients)
	}
	deadline := readDeadline(ctx, t.Patience)
	wait := time.Until(deadline).Round(time.Millisecond)
	echoed := make([]bool, manyClients)
	for i, c := range conns {
		if c == nil {
			continue
		}
		wg.Go(func() {
			m := msg(i)
			c.SetDeadline(deadline)
			idle[i] = time.Since(connected[i])
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
				errs[i] = mismatch(m, got, d)
				return
			}
			echoed[i] = true
		})
	}
	wg.Wait()
	ok, refused := 0, 0
	var echoedIdle, refusedIdle, shortestRefused time.Duration // sums, and the least
	for i, err := range errs {
		switch {
		case echoed[i]:
			ok++
			echoedIdle += idle[i]
		case isReset(err) || errors.Is(err, io.EOF):
			if refused == 0 || idle[i] < shortestRefused {
				shortestRefused = idle[i]
			}
			refused++
			refusedIdle += idle[i]
		}
	}
	if refused > 0 && ok > 0 && ok+refused == manyClients && shortestRefused >= idleClose &&
		refusedIdle/time.Duration(refused) > echoedIdle/time.Duration(ok) {
		// Those that sat idle longer were closed: an idle timeout, where
		// a connection limit turns away the last to connect.
		return "", fmt.Errorf("%d of %d clients connected at once were closed or reset without a reply, each after sitting idle %v or more since it connected (those that got their echo sat %v on average): something between (a NAT, load balancer or tunnel) or the server closes idle connections; %s",
			refused, manyClients, shortestRefused.Round(time.Millisecond), (echoedIdle / time.Duration(ok)).Round(time.Millisecond), pathHint(t.Addr))
	}
	if refused > 0 && ok > 0 && ok+refused == manyClients {
		// The server took some clients and turned the rest away at once:
		// a limit on connections, most often per client address.
		return "", fmt.Errorf("%d of %d clients connected at once got their echo; the other %d were closed or reset without a reply: this looks like a per-IP connection limit of %d (echod serve's -max-conns-per-ip does this)", ok, manyClients, refused, ok)
	}
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, manyClients, err)
		}
	}
	switch {
	case ok == 0:
		return "", fmt.Errorf("none of %d clients connected at once got its echo within %v (a server that buffers until EOF fails here too: see the streaming check)", manyClients, wait)
	case ok == 1:
		return "", fmt.Errorf("only 1 of %d clients connected at once got its echo within %v: the server serves one client at a time", manyClients, wait)
	case ok < manyClients:
		return "", fmt.Errorf("only %d of %d clients connected at once got their echo within %v: the server serves at most %d clients at a time", ok, manyClients, wait, ok)
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
				errs[i] = errNeverCloses(t.Patience)
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
		if tc := tcpOf(c); tc != nil {
			tc.SetLinger(0)
		}
		stop()
		c.Close()
	}
	if err := t.session(ctx, "tcp", p); err != nil {
		return "", fmt.Errorf("after %d of %d clients reset their connections, a new session failed: %w", resetClients, resetClients, err)
	}
	return fmt.Sprintf("%d clients reset their connections, then a new session worked", resetClients), nil
}
