package web

import (
	"bytes"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/internal/testkit"
)

// TestWebSocketMaxSessionBytesCloses1008: once the client has sent
// MaxSessionBytes, every message so far comes back whole, and then a close
// with 1008 naming the limit.
func TestWebSocketMaxSessionBytesCloses1008(t *testing.T) {
	h := &Handler{MaxSessionBytes: 10 << 10}
	c := dial(t, wsURL(serve(t, h), "/"))
	ctx := ctxFor(t, 10*time.Second)
	msg := bytes.Repeat([]byte("x"), 4<<10)
	for i := range 3 {
		typ, got, err := roundTrip(ctx, c, websocket.MessageBinary, msg)
		if err != nil || typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
			t.Fatalf("message %d: %v, %d bytes, %v", i, typ, len(got), err)
		}
	}
	// 12 KiB sent: over the limit.
	_, _, err := c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
		t.Fatalf("after the limit: %v, want a close with 1008", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte(reasonSessionBytes)) {
		t.Errorf("close reason %q does not name %s", err, reasonSessionBytes)
	}
	waitStats(t, h, func(s Stats) bool { return s.SessionBytes == 1 })
}

// TestWebSocketMaxSessionDurationCloses1008: the session ends with 1008
// once it has lasted MaxSessionDuration, however busy or idle.
func TestWebSocketMaxSessionDurationCloses1008(t *testing.T) {
	h := &Handler{MaxSessionDuration: 200 * time.Millisecond}
	c := dial(t, wsURL(serve(t, h), "/"))
	ctx := ctxFor(t, 10*time.Second)
	if _, _, err := roundTrip(ctx, c, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _, err := c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
		t.Fatalf("read: %v, want a close with 1008", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("closed after %v, want about 200ms", took)
	}
	waitStats(t, h, func(s Stats) bool { return s.SessionDuration == 1 && s.WebSockets == 0 })
}

func waitStats(t *testing.T, h *Handler, cond func(Stats) bool) {
	t.Helper()
	testkit.WaitFor(t, "the session's end in Stats", func() bool { return cond(h.Stats()) })
}
