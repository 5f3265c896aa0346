package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/echod/echod/internal/pattern"
)

// WebSocketChecks returns the WebSocket echo suite (Config.URL), in the
// order Run runs it. An echo server passes when every message comes back
// with its type and its bytes, pings get pongs and a close gets a close
// with the same code.
func WebSocketChecks() []Check {
	return []Check{
		{Name: "ws-text", Deadline: 10 * time.Second, Func: checkWSText,
			Doc: "a text message with multi-byte UTF-8 comes back as text, byte for byte"},
		{Name: "ws-binary", Deadline: 10 * time.Second, Func: checkWSBinary,
			Doc: "a binary message of every byte value 0-255 comes back as binary, unchanged"},
		{Name: "ws-sizes", Deadline: 60 * time.Second, Func: checkWSSizes,
			Doc: "messages from 0 bytes to 1 MiB, across the frame-length boundaries, come back whole"},
		{Name: "ws-fragmented", Deadline: 10 * time.Second, Func: checkWSFragmented,
			Doc: "a message sent in 5 frames comes back as one message"},
		{Name: "ws-ping", Deadline: 10 * time.Second, Func: checkWSPing,
			Doc: "a ping is answered by a pong with the same payload, and echo goes on"},
		{Name: "ws-close", Deadline: 10 * time.Second, Func: checkWSClose,
			Doc: "a close with code 4001 is answered by a close with 4001, then the server ends the connection"},
		{Name: "ws-many-clients", Deadline: 30 * time.Second, Func: checkWSManyClients,
			Doc: "50 clients connected at once each get their text and binary echo"},
	}
}

func isWebSocket(c Check) bool { return strings.HasPrefix(c.Name, "ws-") }

// probeWebSocket connects once, so that a wrong address or a server that
// does not speak WebSocket is one clear error rather than every check
// failing the same way.
func (t *Target) probeWebSocket(ctx context.Context) error {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return err
	}
	ws.goodbye()
	return nil
}

func (t *Target) dialWS(ctx context.Context) (*wsConn, error) {
	return dialWebSocket(ctx, t.URL, t.TLS, t.Patience)
}

// allowance is how long an exchange of n bytes may take: the patience, and
// a second per MiB for a distant server.
func allowance(patience time.Duration, n int) time.Duration {
	return patience + time.Duration(n)*time.Second/(1<<20)
}

// exchange sends one message of type op in the given frames, reading at
// the same time, and judges the message that comes back. It returns how
// many frames the echo came in.
func (ws *wsConn) exchange(ctx context.Context, patience time.Duration, op byte, frames ...[]byte) (int, error) {
	var sent []byte
	for _, f := range frames {
		sent = append(sent, f...)
	}
	ws.setDeadline(ctx, allowance(patience, len(sent)))
	// Written while reading: a server that echoes as it reads would
	// otherwise stall against a client that is not reading yet.
	werr := make(chan error, 1)
	go func() {
		for i, f := range frames {
			fop := byte(opContinuation)
			if i == 0 {
				fop = op
			}
			if err := ws.writeFrame(i == len(frames)-1, fop, f); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	gotOp, got, n, err := ws.readMessage()
	if err != nil {
		ws.c.Close() // unblocks the writer
	}
	if e := <-werr; e != nil && err == nil {
		err = e
	}
	return n, judgeWS(op, sent, gotOp, got, err, allowance(patience, len(sent)))
}

// judgeWS explains what is wrong with the echo of a message of type op
// with bytes sent, or returns nil when gotOp and got are exactly that.
func judgeWS(op byte, sent []byte, gotOp byte, got []byte, err error, waited time.Duration) error {
	what := fmt.Sprintf("a %s message of %s", opName(op), size(int64(len(sent))))
	var closed *ClosedError
	switch {
	case errors.As(err, &closed):
		return fmt.Errorf("%v instead of echoing %s", closed, what)
	case isTimeout(err):
		hint := ""
		if op == opBinary {
			hint = "; a server that handles only text messages drops binary ones"
		}
		return fmt.Errorf("no echo of %s within %v%s", what, waited.Round(time.Millisecond), hint)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err):
		return fmt.Errorf("the server ended the connection, without a close frame, instead of echoing %s", what)
	case err != nil:
		return fmt.Errorf("echo of %s: %w", what, err)
	case gotOp != op:
		return fmt.Errorf("%s came back as a %s message; an echo keeps the type", what, opName(gotOp))
	}
	if d := pattern.FirstDiff(got, sent); d >= 0 {
		m := &pattern.Mismatch{Offset: int64(d), Got: got[d], Want: sent[d]}
		if op == opText && utf8.Valid(sent) {
			return fmt.Errorf("%s came back changed: sent %s, got %s (%v)", what, quote(sent), quote(got), m)
		}
		return fmt.Errorf("%s came back changed: %v (%d bytes came back)", what, m, len(got))
	}
	if len(got) != len(sent) {
		return fmt.Errorf("%s came back as %s", what, size(int64(len(got))))
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

const wsText = "Ground Control to Major Tom: ünïcödé ✓, 🚀 and all"

func checkWSText(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	if _, err := ws.exchange(ctx, t.Patience, opText, []byte(wsText)); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes of UTF-8 text", len(wsText)), nil
}

func checkWSBinary(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	if _, err := ws.exchange(ctx, t.Patience, opBinary, allBytes()); err != nil {
		return "", err
	}
	return "0x00-0xff up and down, 512 bytes", nil
}

// wsSizes cross every boundary of the frame length encoding (7 bits, 16
// bits, 64 bits) and the common 32 KiB buffer.
var wsSizes = []int{0, 1, 125, 126, 127, 65535, 65536, 65537, 32<<10 + 1, 1 << 20}

func checkWSSizes(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	for i, n := range wsSizes {
		msg := make([]byte, n)
		pattern.NewStream(uint64(i + 1)).Read(msg)
		if _, err := ws.exchange(ctx, t.Patience, opBinary, msg); err != nil {
			return "", err
		}
	}
	return fmt.Sprintf("%d sizes from 0 bytes to 1 MiB, on one connection", len(wsSizes)), nil
}

func checkWSFragmented(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	frames := [][]byte{[]byte("one "), []byte("frame "), []byte("at "), []byte("a "), []byte("time ✓")}
	n, err := ws.exchange(ctx, t.Patience, opText, frames...)
	if err != nil {
		return "", fmt.Errorf("sent in %d frames: %w", len(frames), err)
	}
	return fmt.Sprintf("5 frames out, one message of %d bytes back in %s", len(bytes.Join(frames, nil)), count(n, "frame")), nil
}

func checkWSPing(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	payload := []byte("echod check ping")
	ws.setDeadline(ctx, t.Patience)
	if err := ws.writeFrame(true, opPing, payload); err != nil {
		return "", err
	}
	start := time.Now()
	f, err := ws.readFrame()
	switch {
	case isTimeout(err):
		return "", fmt.Errorf("no pong within %v of a ping (RFC 6455 section 5.5.2: a pong must answer a ping)", t.Patience)
	case err != nil:
		return "", fmt.Errorf("waiting for a pong: %w", err)
	case f.op == opClose:
		return "", fmt.Errorf("%v instead of answering a ping", closedError(f.payload))
	case f.op != opPong:
		return "", fmt.Errorf("a %s frame came back for a ping, not a pong", opName(f.op))
	case !bytes.Equal(f.payload, payload):
		return "", fmt.Errorf("the pong carries %q, not the ping's %q (RFC 6455 section 5.5.3)", f.payload, payload)
	}
	rtt := time.Since(start)
	if _, err := ws.exchange(ctx, t.Patience, opText, []byte(wsText)); err != nil {
		return "", fmt.Errorf("after a ping and its pong: %w", err)
	}
	return fmt.Sprintf("pong in %v, then echo as before", rtt.Round(time.Microsecond)), nil
}

func checkWSClose(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	const code = 4001
	ws.setDeadline(ctx, t.Patience)
	if err := ws.writeFrame(true, opClose, closePayload(code, "echod check")); err != nil {
		return "", err
	}
	for {
		f, err := ws.readFrame()
		switch {
		case isTimeout(err):
			return "", fmt.Errorf("no close frame came back within %v of the client's close (%d): RFC 6455 section 5.5.1 says the server must answer with one", t.Patience, code)
		case err != nil:
			return "", fmt.Errorf("the connection ended, with no close frame, after the client's close (%d): %w", code, err)
		case f.op != opClose:
			continue // data sent before the server saw the close
		}
		if got := closedError(f.payload); got.Code != code {
			return "", fmt.Errorf("the client's close (%d) was answered with %d: an echo server echoes the code (RFC 6455 section 5.5.1)", code, got.Code)
		}
		break
	}
	// The server, having sent its close, ends the TCP connection first
	// (RFC 6455 section 7.1.1).
	ws.setDeadline(ctx, t.Patience)
	var b [1]byte
	_, err = ws.br.Read(b[:])
	switch {
	case isTimeout(err):
		return "", fmt.Errorf("after the close handshake the server kept the connection open for %v; it should end it (RFC 6455 section 7.1.1)", t.Patience)
	case err == nil:
		return "", errors.New("the server sent more after its close frame")
	}
	return fmt.Sprintf("close %d answered with %d, then the connection ended", code, code), nil
}

// wsClients is how many clients ws-many-clients connects at once.
const wsClients = 50

func checkWSManyClients(ctx context.Context, t *Target) (string, error) {
	conns := make([]*wsConn, 0, wsClients)
	defer func() {
		for _, ws := range conns {
			ws.Close()
		}
	}()
	// All connected first, so that they are open at once.
	for i := range wsClients {
		ws, err := t.dialWS(ctx)
		if err != nil {
			return "", fmt.Errorf("client %d of %d: %w", i+1, wsClients, err)
		}
		conns = append(conns, ws)
	}
	errs := make([]error, wsClients)
	var wg sync.WaitGroup
	for i, ws := range conns {
		wg.Go(func() {
			text := fmt.Appendf(nil, "client %d of %d: %s", i+1, wsClients, wsText)
			bin := make([]byte, 4096)
			pattern.NewStream(uint64(1000 + i)).Read(bin)
			if _, err := ws.exchange(ctx, t.Patience, opText, text); err != nil {
				errs[i] = err
				return
			}
			if _, err := ws.exchange(ctx, t.Patience, opBinary, bin); err != nil {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	failed, first := 0, -1
	for i, err := range errs {
		if err != nil {
			failed++
			if first < 0 {
				first = i
			}
		}
	}
	if failed > 0 {
		return "", fmt.Errorf("%d of %d clients connected at once failed; client %d: %w", failed, wsClients, first+1, errs[first])
	}
	for _, ws := range conns {
		ws.goodbye()
	}
	return fmt.Sprintf("%d clients at once, a text and a binary message each", wsClients), nil
}
