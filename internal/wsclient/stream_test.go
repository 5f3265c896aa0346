package wsclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// serveFragmented runs a server that echoes each message in frames of
// piece bytes, pinging the client before each frame after the first, and
// returns its ws:// URL.
func serveFragmented(t *testing.T, piece int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		// Reading in the background answers the client's pong to each
		// ping below, and brings in its messages.
		msgs := make(chan message, 16)
		go func() {
			defer close(msgs)
			for {
				typ, msg, err := c.Read(ctx)
				if err != nil {
					return
				}
				msgs <- message{typ, msg}
			}
		}()
		for m := range msgs {
			wr, err := c.Writer(ctx, m.typ)
			if err != nil {
				return
			}
			for i := 0; i < len(m.msg); i += piece {
				if i > 0 {
					if err := c.Ping(ctx); err != nil {
						return
					}
				}
				if _, err := wr.Write(m.msg[i:min(i+piece, len(m.msg))]); err != nil {
					return
				}
			}
			if err := wr.Close(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
}

type message struct {
	typ websocket.MessageType
	msg []byte
}

// A message that comes back in several frames with pings between them
// reads as one message of the bytes sent, the pings answered on the way.
func TestMessageReaderReadsFragmentsAndAnswersPings(t *testing.T) {
	ctx := context.Background()
	ws, err := Dial(ctx, serveFragmented(t, 1000), nil, patience)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	m := ws.Messages()
	for i, tc := range []struct {
		op  Op
		msg []byte
	}{
		{Binary, bytes.Repeat([]byte{1, 2, 3}, 1500)},
		{Text, []byte("one frame")},
		{Binary, nil},
		{Text, bytes.Repeat([]byte("é"), 2000)},
	} {
		ws.SetDeadline(ctx, patience)
		if err := ws.WriteMessage(tc.op, tc.msg); err != nil {
			t.Fatal(err)
		}
		op, err := m.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		// Small reads, to cross frame edges in mid-read.
		got, err := io.ReadAll(io.LimitReader(m, 1<<20))
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if err := Explain(tc.op, tc.msg, op, got, nil, patience); err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	// Next skips what is left of a message read in part.
	for range 2 {
		if err := ws.WriteMessage(Binary, bytes.Repeat([]byte{9}, 3000)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Next(); err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(m); err != nil || len(got) != 3000 {
		t.Errorf("second message: %d bytes, %v; want 3000", len(got), err)
	}
}

// A close frame ends Next with the server's code.
func TestMessageReaderClosed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.Close(websocket.StatusMessageTooBig, "too big")
	}))
	t.Cleanup(srv.Close)
	ws, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http")+"/", nil, patience)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, err = ws.Messages().Next()
	var closed *ClosedError
	if !errors.As(err, &closed) || closed.Code != 1009 || closed.Reason != "too big" {
		t.Fatalf("got %v, want the server's close 1009", err)
	}
}

func TestMaskMatchesBytewise(t *testing.T) {
	var key uint32 = 0x9a7c3e15
	for n := range 40 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		mask(b, key)
		for i := range b {
			want := byte(i*7) ^ byte(key>>(8*(i%4)))
			if b[i] != want {
				t.Fatalf("length %d, byte %d: %#x, want %#x", n, i, b[i], want)
			}
		}
	}
}

// discardConn is a connection whose writes go nowhere, to time the
// client's own work per frame.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkWriteFrame is the client's cost of one message besides the
// system call: the header, a masking key and the masked copy. bench pays
// it per message over ws:// and wss://.
func BenchmarkWriteFrame(b *testing.B) {
	for _, size := range []int{64, 512, 32 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			ws := &Conn{c: discardConn{}, masks: mrand.NewChaCha8([32]byte{1})}
			msg := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := ws.WriteFrame(true, Binary, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
