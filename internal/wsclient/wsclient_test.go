package wsclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const patience = 5 * time.Second

// serve runs a coder/websocket server that passes each message through
// change before sending it back, and returns its ws:// URL.
func serve(t *testing.T, change func([]byte) []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, change(msg)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/echo"
}

func TestSend(t *testing.T) {
	good := serve(t, func(b []byte) []byte { return b })
	upper := serve(t, bytes.ToUpper)
	binary := string([]byte{0, 1, 2, 0xff, 0xfe})
	for _, tc := range []struct {
		name, url, in string
		verify        bool
		want, wantErr string
	}{
		{"text", good, "hello, echod ✓\n", true, "hello, echod ✓\n", ""},
		{"binary", good, binary, true, binary, ""},
		{"empty", good, "", true, "", ""},
		{"changed, verified", upper, "hello", true, "HELLO",
			`a text message of 5 bytes came back changed: sent "hello", got "HELLO" (byte 0 differs: got 0x48 want 0x68)`},
		{"changed, not verified", upper, "hello", false, "HELLO", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Send(context.Background(), SendConfig{URL: tc.url, Patience: patience, Verify: tc.verify}, strings.NewReader(tc.in), &out)
			if out.String() != tc.want {
				t.Errorf("printed %q, want %q", out.String(), tc.want)
			}
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Errorf("got error %v, want %q", err, tc.wantErr)
			}
		})
	}
	err := Send(context.Background(), SendConfig{URL: good, Patience: patience}, io.LimitReader(zeros{}, MaxSend+1), io.Discard)
	if err == nil || err.Error() != "the input is longer than 16 MiB, the most sent as one WebSocket message" {
		t.Errorf("input past MaxSend: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Frames written one after another, of every length encoding, come back
// whole: the reused write buffer never leaks one frame into the next.
func TestFramesOfEveryLength(t *testing.T) {
	ws, err := Dial(context.Background(), serve(t, func(b []byte) []byte { return b }), nil, patience)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i, n := range []int{0, 125, 126, 65535, 65536, 200_000, 3} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, n)
		ws.SetDeadline(context.Background(), patience)
		if err := ws.WriteMessage(Binary, msg); err != nil {
			t.Fatal(err)
		}
		op, got, _, err := ws.ReadMessage()
		if err := Explain(Binary, msg, op, got, err, patience); err != nil {
			t.Fatalf("message %d of %d bytes: %v", i, n, err)
		}
	}
	ws.CloseHandshake(context.Background(), patience)
}

func TestDialNothingListening(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Dial(context.Background(), "ws://"+addr+"/", nil, patience)
	var de *DialError
	if !errors.As(err, &de) || err.Error() != "nothing is listening on "+addr {
		t.Fatalf("got %v, want a DialError saying nothing is listening", err)
	}
	for _, bad := range []string{"http://127.0.0.1:1/", "ws:///path", "ws://[::1/"} {
		if _, err := Dial(context.Background(), bad, nil, patience); err == nil || !strings.Contains(err.Error(), "WebSocket URL") {
			t.Errorf("%q: got %v, want an invalid WebSocket URL error", bad, err)
		}
	}
}
