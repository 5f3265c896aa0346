package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/internal/testkit"
)

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// roundTrip sends one message and reads one, writing and reading at once
// so that a large message cannot deadlock against the server's backpressure.
func roundTrip(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte, error) {
	werr := make(chan error, 1)
	go func() { werr <- c.Write(ctx, typ, msg) }()
	gotTyp, got, err := c.Read(ctx)
	if e := <-werr; e != nil {
		return 0, nil, fmt.Errorf("write: %w", e)
	}
	return gotTyp, got, err
}

func TestWebSocketEchoesTypeAndBytes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		c := dial(t, wsURL(srv, "/any/path?x=1"))
		ctx := ctxFor(t, 30*time.Second)
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		for _, tc := range []struct {
			name string
			typ  websocket.MessageType
			msg  []byte
		}{
			{"text", websocket.MessageText, []byte("héllo, echod ✓")},
			{"empty text", websocket.MessageText, nil},
			{"empty binary", websocket.MessageBinary, nil},
			{"all byte values", websocket.MessageBinary, all},
			{"one buffer", websocket.MessageBinary, random(t, bufferSize)},
			{"one buffer and a byte", websocket.MessageBinary, random(t, bufferSize+1)},
			{"the largest", websocket.MessageBinary, random(t, DefaultMaxMessage)},
			{"the largest text", websocket.MessageText, bytes.Repeat([]byte("a"), DefaultMaxMessage)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				typ, got, err := roundTrip(ctx, c, tc.typ, tc.msg)
				if err != nil {
					t.Fatal(err)
				}
				if typ != tc.typ {
					t.Errorf("type %v came back as %v", tc.typ, typ)
				}
				if !bytes.Equal(got, tc.msg) {
					t.Errorf("%d bytes sent, %d came back, differing", len(tc.msg), len(got))
				}
			})
		}
	})
}

func random(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestWebSocketFragmentedMessageComesBackWhole(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		c := dial(t, wsURL(srv, "/"))
		ctx := ctxFor(t, 10*time.Second)
		w, err := c.Writer(ctx, websocket.MessageText)
		if err != nil {
			t.Fatal(err)
		}
		parts := []string{"one ", "frame ", "at a ", "time"}
		for _, p := range parts {
			// Each Write is a frame of its own.
			if _, err := io.WriteString(w, p); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != "one frame at a time" {
			t.Fatalf("got %v %q %v, want text %q", typ, got, err, "one frame at a time")
		}
	})
}

func TestWebSocketMessagesComeBackInOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		c := dial(t, wsURL(srv, "/"))
		ctx := ctxFor(t, 10*time.Second)
		const n = 100
		for i := range n {
			if err := c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, "message %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range n {
			_, got, err := c.Read(ctx)
			if want := fmt.Sprintf("message %d", i); err != nil || string(got) != want {
				t.Fatalf("echo %d: got %q %v, want %q", i, got, err, want)
			}
		}
		// The goroutine echo counts a message once its write returns,
		// which can be a moment after the client has read it.
		testkit.WaitFor(t, fmt.Sprintf("%d messages counted", n), func() bool {
			s := serveStats(t, srv)
			return s.Messages == n && s.MessageBytes > 0
		})
	})
}

func serveStats(t testing.TB, srv *httptest.Server) Stats {
	t.Helper()
	return srv.Config.Handler.(*Handler).Stats()
}

func TestWebSocketPingIsAnswered(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		c := dial(t, wsURL(srv, "/"))
		ctx := ctxFor(t, 10*time.Second)
		// Pongs are read by a reader; CloseRead runs one.
		c.CloseRead(ctx)
		for range 3 {
			if err := c.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
		}
	})
}

func TestWebSocketCloseReturnsTheClientsCode(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		for _, code := range []websocket.StatusCode{websocket.StatusNormalClosure, websocket.StatusGoingAway, 4001} {
			c := dial(t, wsURL(srv, "/"))
			// Close fails unless the server's close frame has the same code.
			if err := c.Close(code, "bye"); err != nil {
				t.Errorf("close with %d: %v", code, err)
			}
		}
		testkit.WaitFor(t, "the server forgets the closed connections", func() bool { return serveStats(t, srv).WebSockets == 0 })
	})
}

func TestWebSocketMessageTooBigCloses1009(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{MaxMessage: 1000}, engine).Server
		ctx := ctxFor(t, 10*time.Second)
		c := dial(t, wsURL(srv, "/"))
		if _, got, err := roundTrip(ctx, c, websocket.MessageBinary, random(t, 1000)); err != nil || len(got) != 1000 {
			t.Fatalf("a message of MaxMessage bytes: %d bytes back, %v", len(got), err)
		}
		for _, n := range []int{1001, 5 * bufferSize} {
			c := dial(t, wsURL(srv, "/"))
			c.Write(ctx, websocket.MessageBinary, random(t, n))
			_, _, err := c.Read(ctx)
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusMessageTooBig || ce.Reason != "message too big: the most is 1000 bytes" {
				t.Errorf("%d bytes, over a limit of 1000: got %v, want close 1009 message too big: the most is 1000 bytes", n, err)
			}
		}
		if s := serveStats(t, srv); s.TooBig != 2 {
			t.Errorf("TooBig = %d, want 2", s.TooBig)
		}
	})
}

// A client that sends and never reads is held back by TCP, not buffered:
// the server reads the next message only once its echo is written.
func TestWebSocketClientThatNeverReadsIsHeldBack(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		c := dial(t, wsURL(srv, "/"))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		msg := random(t, 64<<10)
		const most = 128 << 20 // far beyond any socket buffers
		sent := 0
		for sent < most {
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				break
			}
			sent += len(msg)
		}
		if sent >= most {
			t.Fatalf("the client wrote %d MiB without reading an echo: the server buffers instead of holding it back", sent>>20)
		}
		t.Logf("held back after %d MiB", sent>>20)
	})
}

func TestWebSocketIdleTimeoutCloses1001(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{IdleTimeout: time.Second}, engine).Server
		c := dial(t, wsURL(srv, "/"))
		ctx := ctxFor(t, 10*time.Second)
		if _, _, err := roundTrip(ctx, c, websocket.MessageText, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "idle timeout" {
			t.Fatalf("got %v, want close 1001 idle timeout", err)
		}
	})
}

func TestShutdownClosesWebSocketsAfterTheirEcho(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		h := &Handler{}
		s := serveOn(t, h, engine)
		srv := s.Server
		ctx := ctxFor(t, 20*time.Second)
		idle := dial(t, wsURL(srv, "/"))
		busy := dial(t, wsURL(srv, "/"))

		// busy has a message half sent, its first half already echoed.
		msg := random(t, 4*bufferSize)
		w, err := busy.Writer(ctx, websocket.MessageBinary)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(msg[:2*bufferSize]); err != nil {
			t.Fatal(err)
		}
		_, rd, err := busy.Reader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, bufferSize)
		if _, err := io.ReadFull(rd, got); err != nil {
			t.Fatal(err)
		}

		done := make(chan error, 1)
		go func() { done <- s.shutdown(ctx) }()
		_, _, err = idle.Read(ctx)
		if ce := (websocket.CloseError{}); !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "server shutting down" {
			t.Fatalf("idle connection: got %v, want close 1001 server shutting down", err)
		}
		// The drain has started: new upgrades are refused.
		req := newRequest(t, "GET", srv.URL+"/", "", "Connection", "Upgrade", "Upgrade", "websocket",
			"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		if status, _, _ := do(t, req); status != http.StatusServiceUnavailable {
			t.Errorf("an upgrade during the drain got %d, want 503", status)
		}

		if _, err := w.Write(msg[2*bufferSize:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(rd)
		if err != nil {
			t.Fatalf("the echo in flight was cut: %v", err)
		}
		if !bytes.Equal(append(got, rest...), msg) {
			t.Fatalf("the echo in flight differs: %d bytes of %d", bufferSize+len(rest), len(msg))
		}
		_, _, err = busy.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("busy connection after its echo: got %v, want close 1001", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	})
}

func TestShutdownPastItsDeadlineCloses(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		h := &Handler{}
		srv := serveOn(t, h, engine)
		dial(t, wsURL(srv.Server, "/")) // never reads, so never answers the close
		// The client's dial returns once it has read the 101, which may
		// be before the server has counted the session: a Shutdown then
		// would find nothing to wait for.
		testkit.WaitFor(t, "the server to count the WebSocket", func() bool { return h.Stats().WebSockets == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := srv.shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want %v", err, context.DeadlineExceeded)
		}
		testkit.WaitFor(t, "no WebSocket open after Shutdown", func() bool { return h.Stats().WebSockets == 0 })
	})
}

// A client may send its first frame with its upgrade request, before the
// 101: the frame is echoed as any other.
func TestWebSocketFrameSentWithTheUpgrade(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// A masked text frame, "early", with a zero mask.
		br := upgradeWith(t, serveOn(t, &Handler{}, engine).Server, []byte{0x81, 0x85, 0, 0, 0, 0, 'e', 'a', 'r', 'l', 'y'})
		got := make([]byte, 7)
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatal(err)
		}
		if want := []byte{0x81, 5, 'e', 'a', 'r', 'l', 'y'}; !bytes.Equal(got, want) {
			t.Fatalf("echo % x, want % x", got, want)
		}
	})
}

// A text message that is not UTF-8 is closed with 1007, not echoed (RFC
// 6455 section 8.1), whether the fault is in its first piece or is a
// character cut off at its end, past the first buffer.
func TestWebSocketInvalidUTF8Closes1007(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv := serveOn(t, &Handler{}, engine).Server
		ctx := ctxFor(t, 10*time.Second)
		long := bytes.Repeat([]byte("ü"), bufferSize) // two buffers of valid text
		for name, msg := range map[string][]byte{
			"a bad byte":                 []byte("ok \xff then"),
			"a cut character at the end": append(long, 0xe2, 0x82),
		} {
			t.Run(name, func(t *testing.T) {
				c := dial(t, wsURL(srv, "/"))
				// Sent as binary, then relabelled: the client library checks
				// no text, so the frame goes out as text with these bytes.
				w, err := c.Writer(ctx, websocket.MessageText)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					w.Write(msg)
					w.Close()
				}()
				for {
					_, _, err := c.Read(ctx)
					if err == nil {
						continue // pieces of valid text echoed before the fault
					}
					var ce websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != websocket.StatusInvalidFramePayloadData {
						t.Fatalf("got %v, want close 1007", err)
					}
					return
				}
			})
		}
		// Valid text still comes back.
		c := dial(t, wsURL(srv, "/"))
		if _, got, err := roundTrip(ctx, c, websocket.MessageText, long); err != nil || !bytes.Equal(got, long) {
			t.Fatalf("valid text of two buffers: %d bytes back, %v", len(got), err)
		}
	})
}

// A client's unmasked frame is a protocol error, closed with 1002 (RFC
// 6455 section 5.1), not an internal error of the server (1011).
func TestWebSocketUnmaskedFrameCloses1002(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		br := upgradeWith(t, serveOn(t, &Handler{}, engine).Server, []byte{0x81, 0x02, 'h', 'i'}) // text "hi", without a mask
		got := make([]byte, 4)
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if got[0] != 0x88 || got[2] != 0x03 || got[3] != 0xea {
			t.Fatalf("got % x, want a close frame with code 1002 (88 .. 03 ea)", got)
		}
	})
}

// upgradeWith sends a WebSocket upgrade request to srv over a raw
// connection, with frame right behind it, checks the 101 and returns the
// reader of what follows.
func upgradeWith(t *testing.T, srv *httptest.Server, frame []byte) *bufio.Reader {
	t.Helper()
	addr := srv.Listener.Addr().String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write(append([]byte(req), frame...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return br
}
