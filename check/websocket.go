package check

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/wsclient"
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
	ws.Goodbye()
	return nil
}

// dialWS connects to the target's WebSocket URL.
func (t *Target) dialWS(ctx context.Context) (*wsclient.Conn, error) {
	ws, err := wsclient.Dial(ctx, t.URL, t.TLS, t.Patience)
	var de *wsclient.DialError
	if errors.As(err, &de) {
		return nil, &UnreachableError{Addr: de.Addr, Err: de.Err}
	}
	return ws, err
}

// exchange sends one message of type op in the given frames, reading at
// the same time, and judges the message that comes back. It returns how
// many frames the echo came in.
func exchange(ctx context.Context, ws *wsclient.Conn, patience time.Duration, op wsclient.Op, frames ...[]byte) (int, error) {
	var sent []byte
	for _, f := range frames {
		sent = append(sent, f...)
	}
	wait := wsclient.Allowance(patience, len(sent))
	ws.SetDeadline(ctx, wait)
	// Written while reading: a server that echoes as it reads would
	// otherwise stall against a client that is not reading yet.
	werr := make(chan error, 1)
	go func() {
		for i, f := range frames {
			fop := wsclient.Continuation
			if i == 0 {
				fop = op
			}
			if err := ws.WriteFrame(i == len(frames)-1, fop, f); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	gotOp, got, n, err := ws.ReadMessage()
	if err != nil {
		ws.NetConn().Close() // unblocks the writer
	}
	if e := <-werr; e != nil && err == nil {
		err = e
	}
	return n, wsclient.Explain(op, sent, gotOp, got, err, wait)
}

const wsText = "Ground Control to Major Tom: ünïcödé ✓, 🚀 and all"

func checkWSText(ctx context.Context, t *Target) (string, error) {
	ws, err := t.dialWS(ctx)
	if err != nil {
		return "", err
	}
	defer ws.Close()
	if _, err := exchange(ctx, ws, t.Patience, wsclient.Text, []byte(wsText)); err != nil {
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
	if _, err := exchange(ctx, ws, t.Patience, wsclient.Binary, allBytes()); err != nil {
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
		if _, err := exchange(ctx, ws, t.Patience, wsclient.Binary, msg); err != nil {
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
	n, err := exchange(ctx, ws, t.Patience, wsclient.Text, frames...)
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
	ws.SetDeadline(ctx, t.Patience)
	if err := ws.WriteFrame(true, wsclient.Ping, payload); err != nil {
		return "", err
	}
	start := time.Now()
	f, err := ws.ReadFrame()
	switch {
	case wsclient.IsTimeout(err):
		return "", fmt.Errorf("no pong within %v of a ping (RFC 6455 section 5.5.2: a pong must answer a ping)", t.Patience)
	case err != nil:
		return "", fmt.Errorf("waiting for a pong: %w", err)
	case f.Op == wsclient.Close:
		return "", fmt.Errorf("%v instead of answering a ping", wsclient.Closed(f.Payload))
	case f.Op != wsclient.Pong:
		return "", fmt.Errorf("a %s frame came back for a ping, not a pong", f.Op)
	case !bytes.Equal(f.Payload, payload):
		return "", fmt.Errorf("the pong carries %q, not the ping's %q (RFC 6455 section 5.5.3)", f.Payload, payload)
	}
	rtt := time.Since(start)
	if _, err := exchange(ctx, ws, t.Patience, wsclient.Text, []byte(wsText)); err != nil {
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
	ws.SetDeadline(ctx, t.Patience)
	if err := ws.WriteFrame(true, wsclient.Close, wsclient.ClosePayload(code, "echod check")); err != nil {
		return "", err
	}
	for {
		f, err := ws.ReadFrame()
		switch {
		case wsclient.IsTimeout(err):
			return "", fmt.Errorf("no close frame came back within %v of the client's close (%d): RFC 6455 section 5.5.1 says the server must answer with one", t.Patience, code)
		case err != nil:
			return "", fmt.Errorf("the connection ended, with no close frame, after the client's close (%d): %w", code, err)
		case f.Op != wsclient.Close:
			continue // data sent before the server saw the close
		}
		if got := wsclient.Closed(f.Payload); got.Code != code {
			return "", fmt.Errorf("the client's close (%d) was answered with %d: an echo server echoes the code (RFC 6455 section 5.5.1)", code, got.Code)
		}
		break
	}
	// The server, having sent its close, ends the TCP connection first
	// (RFC 6455 section 7.1.1).
	ws.SetDeadline(ctx, t.Patience)
	var b [1]byte
	_, err = ws.Reader().Read(b[:])
	switch {
	case wsclient.IsTimeout(err):
		return "", fmt.Errorf("after the close handshake the server kept the connection open for %v; it should end it (RFC 6455 section 7.1.1)", t.Patience)
	case err == nil:
		return "", errors.New("the server sent more after its close frame")
	}
	return fmt.Sprintf("close %d answered with %d, then the connection ended", code, code), nil
}

// wsClients is how many clients ws-many-clients connects at once.
const wsClients = 50

func checkWSManyClients(ctx context.Context, t *Target) (string, error) {
	conns := make([]*wsclient.Conn, 0, wsClients)
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
			if _, err := exchange(ctx, ws, t.Patience, wsclient.Text, text); err != nil {
				errs[i] = err
				return
			}
			if _, err := exchange(ctx, ws, t.Patience, wsclient.Binary, bin); err != nil {
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
		ws.Goodbye()
	}
	return fmt.Sprintf("%d clients at once, a text and a binary message each", wsClients), nil
}
