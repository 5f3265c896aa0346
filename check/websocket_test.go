package check

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/echod/echod/internal/wsclient"
)

// This file holds WebSocket echo servers for the tests: one correct, and
// some deliberately broken.

// serveWebSocket serves each WebSocket connection with loop, using the
// coder/websocket library, until the test ends; it returns the ws:// URL.
func serveWebSocket(t *testing.T, loop func(ctx context.Context, c *websocket.Conn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		loop(r.Context(), c)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/echo"
}

// echoWS is a correct echo; change, if not nil, breaks it.
func echoWS(change func(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte, bool)) func(context.Context, *websocket.Conn) {
	return func(ctx context.Context, c *websocket.Conn) {
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if change != nil {
				var send bool
				if typ, msg, send = change(typ, msg); !send {
					continue
				}
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	}
}

func upperCaseText(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte, bool) {
	if typ == websocket.MessageText {
		msg = bytes.ToUpper(msg)
	}
	return typ, msg, true
}

func dropBinary(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte, bool) {
	return typ, msg, typ == websocket.MessageText
}

func allBinary(_ websocket.MessageType, msg []byte) (websocket.MessageType, []byte, bool) {
	return websocket.MessageBinary, msg, true
}

// rawFaults are the faults a library would not let a server make.
type rawFaults struct {
	noClose bool // never answer a close
	noPong  bool // never answer a ping
}

// serveRawWebSocket is a WebSocket echo written frame by frame: it echoes
// each data frame as it comes and answers pings and closes, but for its
// faults.
func serveRawWebSocket(t *testing.T, faults rawFaults) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveListener(t, l, func(c *net.TCPConn, done <-chan struct{}) bool {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return true
		}
		sum := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
			base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n")
		for {
			var h [2]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return true
			}
			n := uint64(h[1] & 0x7f)
			switch n {
			case 126:
				var b [2]byte
				io.ReadFull(br, b[:])
				n = uint64(binary.BigEndian.Uint16(b[:]))
			case 127:
				var b [8]byte
				io.ReadFull(br, b[:])
				n = binary.BigEndian.Uint64(b[:])
			}
			var mask [4]byte
			io.ReadFull(br, mask[:])
			p := make([]byte, n)
			if _, err := io.ReadFull(br, p); err != nil {
				return true
			}
			for i := range p {
				p[i] ^= mask[i&3]
			}
			op := h[0] & 0x0f
			switch {
			case wsclient.Op(op) == wsclient.Ping && faults.noPong, wsclient.Op(op) == wsclient.Close && faults.noClose:
				continue
			case wsclient.Op(op) == wsclient.Ping:
				h[0] = 0x80 | byte(wsclient.Pong)
			}
			out := []byte{h[0]}
			switch {
			case n < 126:
				out = append(out, byte(n))
			case n <= 0xffff:
				out = binary.BigEndian.AppendUint16(append(out, 126), uint16(n))
			default:
				out = binary.BigEndian.AppendUint64(append(out, 127), n)
			}
			if _, err := c.Write(append(out, p...)); err != nil || wsclient.Op(op) == wsclient.Close {
				return true
			}
		}
	}, false)
	return "ws://" + l.Addr().String() + "/"
}

func TestWebSocketCorrectServerPassesEverything(t *testing.T) {
	for name, url := range map[string]string{
		"coder/websocket": serveWebSocket(t, echoWS(nil)),
		"frame by frame":  serveRawWebSocket(t, rawFaults{}),
	} {
		t.Run(name, func(t *testing.T) {
			rep, err := Run(context.Background(), Config{URL: url, Patience: testPatience})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Results) != len(WebSocketChecks()) {
				t.Errorf("%d results, want %d", len(rep.Results), len(WebSocketChecks()))
			}
			for _, r := range rep.Results {
				if r.Status != Pass {
					t.Errorf("%s: %s %s", r.Name, r.Status, r.Reason)
				}
			}
			if !rep.OK() || rep.URL != url {
				t.Errorf("report: OK %v, URL %q", rep.OK(), rep.URL)
			}
		})
	}
}

func TestWebSocketBrokenServersFailWithTheRightReason(t *testing.T) {
	for _, tc := range []struct {
		name, url, check, want string
	}{
		{"upper-cases text", serveWebSocket(t, echoWS(upperCaseText)), "ws-text",
			`a text message of 58 bytes came back changed: sent "Ground Control to Major Tom: ünïcödé ✓, 🚀 and all", ` +
				`got "GROUND CONTROL TO MAJOR TOM: ÜNÏCÖDÉ ✓, 🚀 AND ALL" (byte 1 differs: got 0x52 want 0x72)`},
		{"drops binary", serveWebSocket(t, echoWS(dropBinary)), "ws-binary",
			"no echo of a binary message of 512 bytes within 500ms; a server that handles only text messages drops binary ones"},
		{"never answers a close", serveRawWebSocket(t, rawFaults{noClose: true}), "ws-close",
			"no close frame came back within 500ms of the client's close (4001): RFC 6455 section 5.5.1 says the server must answer with one"},
		{"never answers a ping", serveRawWebSocket(t, rawFaults{noPong: true}), "ws-ping",
			"no pong within 500ms of a ping (RFC 6455 section 5.5.2: a pong must answer a ping)"},
		{"answers text with binary", serveWebSocket(t, echoWS(allBinary)), "ws-text",
			"a text message of 58 bytes came back as a binary message; an echo keeps the type"},
		{"answers a close with 1000", serveWebSocket(t, func(ctx context.Context, c *websocket.Conn) {
			// The library echoes the code; this server closes first.
			c.Close(websocket.StatusNormalClosure, "")
		}), "ws-close", "the client's close (4001) was answered with 1000: an echo server echoes the code (RFC 6455 section 5.5.1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runChecks(t, Config{URL: tc.url}, tc.check)[tc.check]
			if got.Status != Fail || got.Reason != tc.want {
				t.Errorf("%s: got %s %q\nwant fail %q", tc.check, got.Status, got.Reason, tc.want)
			}
		})
	}
	// The drops-binary server still passes what it does right.
	if got := runChecks(t, Config{URL: serveWebSocket(t, echoWS(dropBinary))}, "ws-text")["ws-text"]; got.Status != Pass {
		t.Errorf("ws-text against a server that echoes text: %s %s", got.Status, got.Reason)
	}
}

func TestWebSocketNotAWebSocketServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/nope"
	_, err := Run(context.Background(), Config{URL: url, Patience: testPatience})
	want := "the server answered the WebSocket upgrade with HTTP 404 Not Found: 404 page not found, not 101 Switching Protocols: is " + url + " a WebSocket endpoint?"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = Run(context.Background(), Config{URL: "ws://" + addr + "/", Patience: testPatience})
	var unreachable *UnreachableError
	if !errors.As(err, &unreachable) || err.Error() != "nothing is listening on "+addr {
		t.Fatalf("nothing listening: got %v", err)
	}

	for _, bad := range []string{"http://127.0.0.1:1/", "ws:///path", "ws://[::1/"} {
		if _, err := Run(context.Background(), Config{URL: bad}); err == nil || !strings.Contains(err.Error(), "WebSocket URL") {
			t.Errorf("%q: got %v, want an invalid WebSocket URL error", bad, err)
		}
	}
}
