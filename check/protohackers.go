package check

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// ProtohackersChecks returns the sequence the Protohackers Smoke Test
// (problem 0) runs: four sessions one after another, each sending its
// payload, half-closing and expecting exactly it back and then EOF, and then
// five clients at once.
func ProtohackersChecks() []Check {
	return []Check{
		{Name: "protohackers/simple", Deadline: 10 * time.Second, Func: sessionOf(simplePayload),
			Doc: "one short line of text"},
		{Name: "protohackers/empty", Deadline: 10 * time.Second, Func: sessionOf(func() plan { return plan{} }),
			Doc: "no data at all: half-close, then EOF"},
		{Name: "protohackers/long", Deadline: 20 * time.Second, Func: sessionOf(longPayload),
			Doc: "100 KiB of text in several writes"},
		{Name: "protohackers/binary", Deadline: 20 * time.Second, Func: sessionOf(binaryPayload),
			Doc: "100 KiB of random binary data in several writes"},
		{Name: "protohackers/5-clients", Deadline: 20 * time.Second, Func: checkFiveAtOnce,
			Doc: "5 clients at once: four send and half-close while the first stays open, so a server that serves one client at a time fails"},
	}
}

// sessionOf returns a check that runs one session sending what payload
// plans and judges the echo.
func sessionOf(payload func() plan) func(context.Context, *Target) (string, error) {
	return func(ctx context.Context, t *Target) (string, error) {
		p := payload()
		if err := t.session(ctx, "tcp", p); err != nil {
			return "", err
		}
		switch len(p.chunks) {
		case 0:
			return "EOF and nothing else", nil
		case 1:
			return fmt.Sprintf("%s in 1 write, exact echo then EOF", size(p.size())), nil
		}
		return fmt.Sprintf("%s in %d writes, exact echo then EOF", size(p.size()), len(p.chunks)), nil
	}
}

func simplePayload() plan {
	return plan{chunks: [][]byte{[]byte("hello, smoke test\n")}}
}

// inPieces splits b into writes of n bytes with a short pause after each.
func inPieces(b []byte, n int) plan {
	var p plan
	for len(b) > 0 {
		k := min(n, len(b))
		p.chunks = append(p.chunks, b[:k])
		b = b[k:]
	}
	p.pause = func(int) time.Duration { return 5 * time.Millisecond }
	return p
}

func longPayload() plan {
	var b strings.Builder
	for i := 0; b.Len() < 100<<10; i++ {
		fmt.Fprintf(&b, "line %d of a long message that should come back exactly as it went out\n", i)
	}
	return inPieces([]byte(b.String()), 16<<10)
}

func binaryPayload() plan {
	b := make([]byte, 100<<10)
	pattern.NewStream(0xb1).Read(b)
	return inPieces(b, 16<<10)
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
		return "", fmt.Errorf("clients 2 to %d got no reply while client 1 stayed open: the server serves one client at a time (the Smoke Test connects %d at once)", smokeClients, smokeClients)
	}
	for i, err := range errs {
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, smokeClients, err)
		}
	}
	c := conns[0]
	if err := c.CloseWrite(); err != nil {
		return "", fmt.Errorf("client 1 of %d: half-close: %w", smokeClients, err)
	}
	setReadDeadline(ctx, c, t.Patience)
	got, err := io.ReadAll(io.LimitReader(c, int64(len(first))+maxExtra))
	o := outcome{got: got, readErr: err, halfClosed: time.Now()}
	if err == nil {
		o.eofAt = time.Now()
	}
	if err := judge(first, o, t.Patience); err != nil {
		return "", fmt.Errorf("client 1 of %d, after the others: %w", smokeClients, err)
	}
	return fmt.Sprintf("%d clients at once, %s, exact echo then EOF, the first held open until the others were done", smokeClients, size(total)), nil
}
