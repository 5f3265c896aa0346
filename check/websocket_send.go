package check

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"
)

// MaxSend is the largest message SendWebSocket sends: it holds the whole
// message, and the whole echo, in memory.
const MaxSend = 16 << 20

// SendConfig says where SendWebSocket sends, and how.
type SendConfig struct {
	// URL is the server's ws:// or wss:// URL.
	URL string
	// TLS is the client configuration for wss://; nil trusts the system's
	// roots.
	TLS *tls.Config
	// Patience is how long to wait for the upgrade and for the echo, plus
	// a second per MiB sent. Zero means DefaultPatience.
	Patience time.Duration
	// Verify fails the send unless the echo has the type and the bytes
	// that were sent.
	Verify bool
}

// SendWebSocket sends what it reads from in as one WebSocket message (text
// when it is valid UTF-8, else binary), writes the message that comes back
// to out, and ends with a close handshake. The echo goes to out whatever
// it is; with cfg.Verify, one that differs is an error saying how.
func SendWebSocket(ctx context.Context, cfg SendConfig, in io.Reader, out io.Writer) error {
	if cfg.Patience <= 0 {
		cfg.Patience = DefaultPatience
	}
	msg, err := io.ReadAll(io.LimitReader(in, MaxSend+1))
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	if len(msg) > MaxSend {
		return fmt.Errorf("the input is longer than %s, the most sent as one WebSocket message", size(MaxSend))
	}
	op := byte(opBinary)
	if utf8.Valid(msg) {
		op = opText
	}
	ws, err := dialWebSocket(ctx, cfg.URL, cfg.TLS, cfg.Patience)
	if err != nil {
		return err
	}
	defer ws.Close()
	// An echo longer than what was sent is read far enough to say so.
	ws.limit = int64(len(msg)) + 64<<10
	wait := allowance(cfg.Patience, len(msg))
	ws.setDeadline(ctx, wait)
	if err := ws.writeMessage(op, msg); err != nil {
		return err
	}
	gotOp, got, _, err := ws.readMessage()
	if _, werr := out.Write(got); werr != nil {
		return fmt.Errorf("write the echo: %w", werr)
	}
	if err != nil || cfg.Verify {
		if jerr := judgeWS(op, msg, gotOp, got, err, wait); jerr != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			return jerr
		}
	}
	// A polite end: the server's close is awaited only as long as patience.
	ws.closeHandshake(ctx, cfg.Patience)
	return nil
}

// closeHandshake sends a close (1000) and waits up to patience for the
// server's.
func (ws *wsConn) closeHandshake(ctx context.Context, patience time.Duration) {
	ws.setDeadline(ctx, patience)
	if ws.writeFrame(true, opClose, closePayload(1000, "")) != nil {
		return
	}
	for {
		f, err := ws.readFrame()
		if err != nil || f.op == opClose {
			return
		}
	}
}
