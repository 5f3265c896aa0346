package wsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/echod/echod/internal/pattern"
)

// MaxSend is the largest message Send sends: it holds the whole message,
// and the whole echo, in memory.
const MaxSend = 16 << 20

// SendConfig says where Send sends, and how.
type SendConfig struct {
	// URL is the server's ws:// or wss:// URL.
	URL string
	// TLS is the client configuration for wss://; nil trusts the system's
	// roots.
	TLS *tls.Config
	// Patience is how long to wait for the upgrade and for the echo, plus
	// a second per MiB sent.
	Patience time.Duration
	// Verify fails the send unless the echo has the type and the bytes
	// that were sent.
	Verify bool
}

// Send sends what it reads from in as one WebSocket message (text when it
// is valid UTF-8, else binary), writes the message that comes back to out,
// and ends with a close handshake. The echo goes to out whatever it is;
// with cfg.Verify, one that differs is an error saying how.
func Send(ctx context.Context, cfg SendConfig, in io.Reader, out io.Writer) error {
	msg, err := io.ReadAll(io.LimitReader(in, MaxSend+1))
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	if len(msg) > MaxSend {
		return fmt.Errorf("the input is longer than %s, the most sent as one WebSocket message", pattern.Size(MaxSend))
	}
	op := Binary
	if utf8.Valid(msg) {
		op = Text
	}
	ws, err := Dial(ctx, cfg.URL, cfg.TLS, cfg.Patience)
	if err != nil {
		return err
	}
	defer ws.Close()
	// An echo longer than what was sent is read far enough to say so.
	ws.Limit = int64(len(msg)) + 64<<10
	wait := Allowance(cfg.Patience, len(msg))
	ws.SetDeadline(ctx, wait)
	if err := ws.WriteMessage(op, msg); err != nil {
		return err
	}
	gotOp, got, _, err := ws.ReadMessage()
	if _, werr := out.Write(got); werr != nil {
		return fmt.Errorf("write the echo: %w", werr)
	}
	if err != nil || cfg.Verify {
		if jerr := Explain(op, msg, gotOp, got, err, wait); jerr != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return jerr
		}
	}
	// A polite end: the server's close is awaited only as long as patience.
	ws.CloseHandshake(ctx, cfg.Patience)
	return nil
}

// Allowance is how long an exchange of n bytes may take: the patience, and
// a second per MiB for a distant server.
func Allowance(patience time.Duration, n int) time.Duration {
	return patience + time.Duration(n)*time.Second/(1<<20)
}

// Explain says what is wrong with the echo of a message of type op with
// bytes sent, given what reading it returned (gotOp, got, err) after
// waiting up to waited; it returns nil when the echo is exactly that.
func Explain(op Op, sent []byte, gotOp Op, got []byte, err error, waited time.Duration) error {
	what := fmt.Sprintf("a %s message of %s", op, pattern.Size(int64(len(sent))))
	var closed *ClosedError
	switch {
	case errors.As(err, &closed):
		return fmt.Errorf("%v instead of echoing %s", closed, what)
	case IsTimeout(err):
		hint := ""
		if op == Binary {
			hint = "; a server that handles only text messages drops binary ones"
		}
		return fmt.Errorf("no echo of %s within %v%s", what, waited.Round(time.Millisecond), hint)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("the server ended the connection, without a close frame, instead of echoing %s", what)
	case err != nil:
		return fmt.Errorf("echo of %s: %w", what, err)
	case gotOp != op:
		return fmt.Errorf("%s came back as a %s message; an echo keeps the type", what, gotOp)
	}
	if d := pattern.FirstDiff(got, sent); d >= 0 {
		m := &pattern.Mismatch{Offset: int64(d), Got: got[d], Want: sent[d]}
		if op == Text && utf8.Valid(sent) {
			return fmt.Errorf("%s came back changed: sent %s, got %s (%v)", what, quote(sent), quote(got), m)
		}
		return fmt.Errorf("%s came back changed: %v (%d bytes came back)", what, m, len(got))
	}
	if len(got) != len(sent) {
		return fmt.Errorf("%s came back as %s", what, pattern.Size(int64(len(got))))
	}
	return nil
}

// quote shows a text message for a reason, shortened.
func quote(b []byte) string {
	if len(b) > 60 {
		return fmt.Sprintf("%q…", b[:60])
	}
	return fmt.Sprintf("%q", b)
}
