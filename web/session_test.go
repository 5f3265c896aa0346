package web

import (
	"bytes"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/testkit"
)

// TestWebSocketMaxSessionBytesCloses1008: once the client has sent
// MaxSessionBytes, every message so far comes back whole (the last takes
// the session past the limit), and then a close with 1008 naming it.
func TestWebSocketMaxSessionBytesCloses1008(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		h := &Handler{MaxSessionBytes: 10 << 10}
		s := serveOn(t, h, engine)
		c := dial(t, wsURL(s.Server, "/"))
		ctx := ctxFor(t, 10*time.Second)
		msg := bytes.Repeat([]byte("x"), 4<<10)
		for range 3 {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				t.Fatal(err)
			}
		}
		// 12 KiB sent: over the limit.
		whole := 0
		var err error
		for {
			var typ websocket.MessageType
			var got []byte
			if typ, got, err = c.Read(ctx); err != nil {
				break
			}
			if typ != websocket.MessageBinary || !bytes.Equal(got, msg) {
				t.Fatalf("message %d came back as %v, %d bytes", whole, typ, len(got))
			}
			whole++
		}
		if code := websocket.CloseStatus(err); code != websocket.StatusPolicyViolation {
			t.Fatalf("after the limit: %v, want a close with 1008", err)
		}
		if !bytes.Contains([]byte(err.Error()), []byte(reasonSessionBytes)) {
			t.Errorf("close reason %q does not name %s", err, reasonSessionBytes)
		}
		if whole != 3 {
			t.Errorf("%d messages came back before the close, want 3", whole)
		}
		waitLimited(t, s, h, echo.ReasonMaxSessionBytes, func(s Stats) uint64 { return s.SessionBytes })
	})
}

// TestWebSocketMaxSessionDurationCloses1008: the session ends with 1008
// once it has lasted MaxSessionDuration, however busy or idle.
func TestWebSocketMaxSessionDurationCloses1008(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		h := &Handler{MaxSessionDuration: 200 * time.Millisecond}
		s := serveOn(t, h, engine)
		c := dial(t, wsURL(s.Server, "/"))
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
		waitLimited(t, s, h, echo.ReasonMaxSessionDuration, func(s Stats) uint64 { return s.SessionDuration })
		waitStats(t, h, func(s Stats) bool { return s.WebSockets == 0 })
	})
}

func waitStats(t *testing.T, h *Handler, cond func(Stats) bool) {
	t.Helper()
	testkit.WaitFor(t, "the session's end in Stats", func() bool { return cond(h.Stats()) })
}

// waitLimited waits until the session's end for why is counted once: by
// the Handler on goroutines, by the echo server that adopted it on the
// event loop, never by both (the metrics add them up).
func waitLimited(t *testing.T, s *served, h *Handler, why echo.Reason, handlers func(Stats) uint64) {
	t.Helper()
	testkit.WaitFor(t, "the limit counted once", func() bool {
		var adopter uint64
		if s.loop != nil {
			adopter = s.loop.Stats().Limited[why]
		}
		return handlers(h.Stats())+adopter == 1
	})
	if s.loop != nil && handlers(h.Stats()) != 0 {
		t.Errorf("the Handler counted a limit the echo server applied")
	}
}
