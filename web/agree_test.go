package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// wsSession is a scripted WebSocket client on a raw connection: it sends
// exact frames and writes down, in words, everything that comes back.
type wsSession struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	seed uint32
	// The message coming back, kept across the control frames that may
	// come between its fragments.
	op  byte
	msg []byte
}

// openSession upgrades a raw connection to s.
func openSession(t *testing.T, s *served) *wsSession {
	t.Helper()
	addr := s.Listener.Addr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET /agree HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept %q, want the RFC 6455 example's", got)
	}
	return &wsSession{t: t, conn: c, br: br}
}

// send writes a client frame.
func (w *wsSession) send(fin bool, op byte, payload []byte) {
	w.seed++
	if _, err := w.conn.Write(clientFrame(fin, op, payload, w.seed)); err != nil {
		w.t.Fatalf("send: %v", err)
	}
}

// next reads until one whole message, control frame or end has come back
// and says what it was: "text hello", "binary 300 bytes sha", "pong x",
// "close 1001 idle timeout", "EOF".
func (w *wsSession) next() string {
	for {
		var h [2]byte
		if _, err := io.ReadFull(w.br, h[:]); err != nil {
			if err == io.EOF {
				return "EOF"
			}
			return "error " + err.Error()
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			io.ReadFull(w.br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			io.ReadFull(w.br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		if h[1]&0x80 != 0 || n > 64<<20 {
			return fmt.Sprintf("bad frame % x", h)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(w.br, p); err != nil {
			return "cut frame: " + err.Error()
		}
		fop := h[0] & 0x0f
		switch {
		case fop == opClose && len(p) >= 2:
			return fmt.Sprintf("close %d %s", binary.BigEndian.Uint16(p), p[2:])
		case fop == opClose:
			return "close"
		case fop == opPing || fop == opPong:
			return fmt.Sprintf("%s %s", map[byte]string{opPing: "ping", opPong: "pong"}[fop], p)
		case fop != opContinuation:
			w.op = fop
		}
		w.msg = append(w.msg, p...)
		if h[0]&0x80 != 0 {
			line := describe(w.op, w.msg)
			w.op, w.msg = 0, nil
			return line
		}
	}
}

// describe names a message in a line.
func describe(op byte, msg []byte) string {
	if op == opText && len(msg) <= 64 {
		return "text " + string(msg)
	}
	kind := map[byte]string{opText: "text", opBinary: "binary"}[op]
	return fmt.Sprintf("%s %d bytes %08x", kind, len(msg), crc(msg))
}

func crc(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// rest reads what follows until the end, the transcript of a session's
// last lines, answering a close as a client does and closing the
// connection at its end.
func (w *wsSession) rest() []string {
	defer w.conn.Close()
	var lines []string
	closed := false
	for range 10 {
		l := w.next()
		ended := l == "EOF" || strings.HasPrefix(l, "error") || strings.HasPrefix(l, "cut")
		if ended && closed {
			// After the close handshake the server may close before our
			// answer reaches it, and a reset can replace the EOF.
			l = "end"
		}
		lines = append(lines, l)
		switch {
		case strings.HasPrefix(l, "close"):
			closed = true
			w.conn.Write(clientFrame(true, opClose, nil, 0)) // may find it closed
		case ended:
			return lines
		}
	}
	return lines
}

// TestEnginesAgreeOnWebSockets plays the same WebSocket sessions against
// both engines and compares, line by line, what a client sees: every
// message, pong and close, and the end of the connection.
func TestEnginesAgreeOnWebSockets(t *testing.T) {
	binaryAll := make([]byte, 256)
	for i := range binaryAll {
		binaryAll[i] = byte(i)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // past one 32 KiB buffer
	closePayload := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	type script func(w *wsSession, s *served) []string
	for _, tc := range []struct {
		name string
		h    func() *Handler
		run  script
	}{
		{"text and binary", nil, func(w *wsSession, _ *served) []string {
			w.send(true, opText, []byte("héllo"))
			w.send(true, opBinary, binaryAll)
			w.send(true, opText, nil)
			w.send(true, opBinary, big)
			return []string{w.next(), w.next(), w.next(), w.next()}
		}},
		{"fragmented", nil, func(w *wsSession, _ *served) []string {
			w.send(false, opText, []byte("frag"))
			w.send(false, opContinuation, []byte("men"))
			w.send(true, opPing, []byte("between"))
			w.send(true, opContinuation, []byte("ted"))
			w.send(false, opBinary, big[:40000])
			w.send(true, opContinuation, big[40000:])
			return []string{w.next(), w.next(), w.next()}
		}},
		{"ping", nil, func(w *wsSession, _ *served) []string {
			w.send(true, opPing, []byte("are you there"))
			w.send(true, opPing, nil)
			w.send(true, opPong, []byte("unasked")) // no answer
			w.send(true, opText, []byte("after"))
			return []string{w.next(), w.next(), w.next()}
		}},
		{"close", nil, func(w *wsSession, _ *served) []string {
			w.send(true, opText, []byte("last"))
			w.send(true, opClose, closePayload(4001, "bye"))
			return append([]string{w.next()}, w.rest()...)
		}},
		{"close without a code", nil, func(w *wsSession, _ *served) []string {
			w.send(true, opClose, nil)
			return w.rest()
		}},
		{"oversize", func() *Handler { return &Handler{MaxMessage: 1000} }, func(w *wsSession, _ *served) []string {
			w.send(true, opBinary, big[:1000])
			w.send(true, opBinary, big[:1001])
			return append([]string{w.next()}, w.rest()...)
		}},
		{"oversize in fragments", func() *Handler { return &Handler{MaxMessage: 1000} }, func(w *wsSession, _ *served) []string {
			w.send(false, opBinary, big[:600])
			w.send(true, opContinuation, big[600:1200])
			return w.rest()
		}},
		{"invalid UTF-8", nil, func(w *wsSession, _ *served) []string {
			w.send(true, opText, []byte("ok"))
			w.send(true, opText, []byte("not \xff ok"))
			return append([]string{w.next()}, w.rest()...)
		}},
		{"idle", func() *Handler { return &Handler{IdleTimeout: 300 * time.Millisecond} }, func(w *wsSession, _ *served) []string {
			w.send(true, opText, []byte("still here"))
			return append([]string{w.next()}, w.rest()...)
		}},
		{"drain", nil, func(w *wsSession, s *served) []string {
			w.send(true, opText, []byte("before the drain"))
			first := w.next()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.shutdown(ctx) }()
			lines := append([]string{first}, w.rest()...)
			if err := <-done; err != nil {
				lines = append(lines, "Shutdown: "+err.Error())
			}
			return lines
		}},
		{"drain with a message in flight", nil, func(w *wsSession, s *served) []string {
			idle := openSession(w.t, s)
			w.send(false, opBinary, big[:1000])
			w.send(true, opPing, []byte("busy")) // its pong: the fragment has been read
			lines := []string{w.next()}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- s.shutdown(ctx) }()
			// The drain has begun once the idle session hears of it.
			lines = append(lines, "idle: "+strings.Join(idle.rest(), ", "))
			w.send(true, opContinuation, big[1000:2000])
			lines = append(lines, w.rest()...)
			if err := <-done; err != nil {
				lines = append(lines, "Shutdown: "+err.Error())
			}
			return lines
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2][]string
			for i, e := range []string{"goroutine", "epoll"} {
				h := &Handler{}
				if tc.h != nil {
					h = tc.h()
				}
				s := serveOn(t, h, e)
				got[i] = tc.run(openSession(t, s), s)
				if s.loop != nil && s.loop.Stats().Accepted == 0 {
					t.Fatal("epoll: the echo server served no connection: the WebSocket did not reach the loop")
				}
			}
			if !slices.Equal(got[0], got[1]) {
				t.Errorf("the engines differ:\ngoroutine: %q\nepoll:     %q", got[0], got[1])
			}
			t.Logf("both: %q", got[0])
		})
	}
}
