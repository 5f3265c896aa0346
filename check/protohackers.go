package check

import (
	"context"
	"fmt"
	"strings"
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
			Doc: "5 clients at once, as in the smoke check: a server that serves one client at a time fails"},
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
