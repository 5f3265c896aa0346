package bench

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/echod/echod/internal/target"
	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

// serveTLS runs handle on every TLS connection accepted on a fresh loopback
// listener until the test ends, and returns the listener's address.
func serveTLS(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "server", "bench test")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	l := tls.NewListener(testkit.Listen(t), &tls.Config{Certificates: []tls.Certificate{cert}})
	return testkit.Serve(t, l, handle)
}

// wsReply is what a test WebSocket server sends back for message i of a
// connection: messages of the given types and payloads.
type wsReply func(i int, typ websocket.MessageType, msg []byte) []wsMessage

type wsMessage struct {
	typ websocket.MessageType
	msg []byte
}

// echoWS is a correct WebSocket echo.
func echoWS(_ int, typ websocket.MessageType, msg []byte) []wsMessage {
	return []wsMessage{{typ, msg}}
}

// serveWS runs a WebSocket server that answers each message with reply,
// and returns its address for a ws:// run.
func serveWS(t *testing.T, reply wsReply) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(-1)
		ctx := r.Context()
		for i := 0; ; i++ {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
					c.Close(websocket.StatusNormalClosure, "")
				}
				return
			}
			for _, m := range reply(i, typ, msg) {
				if err := c.Write(ctx, m.typ, m.msg); err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func overTLS(addr string, mode Mode) Config {
	c := smoke(addr, mode)
	c.Transport = target.TLS
	c.TLS = &tls.Config{InsecureSkipVerify: true}
	return c
}

func overWS(addr string, mode Mode, types MessageType) Config {
	c := smoke(addr, mode)
	c.Transport = target.WS
	c.MessageType = types
	return c
}

// A server that flips one byte is caught over TLS and WebSocket as over
// TCP, with where and what.
func TestCorruptionIsCaughtOverTLSAndWebSocket(t *testing.T) {
	const at = 100
	tlsAddr := serveTLS(t, corruptStream(at))
	// Over WebSocket the byte is the 101st of the connection's payloads.
	wsAddr := serveWS(t, func(i int, typ websocket.MessageType, msg []byte) []wsMessage {
		if off := at - i*len(msg); off >= 0 && off < len(msg) {
			msg[off] ^= 0x20
		}
		return []wsMessage{{typ, msg}}
	})
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"tls pingpong", overTLS(tlsAddr, PingPong)},
		{"tls pingpong depth 4", func() Config { c := overTLS(tlsAddr, PingPong); c.Depth = 4; return c }()},
		{"tls bulk", overTLS(tlsAddr, Bulk)},
		{"tls cycle", func() Config { c := overTLS(tlsAddr, Cycle); c.Size = 1000; return c }()},
		{"ws pingpong", overWS(wsAddr, PingPong, BinaryMessages)},
		{"ws pingpong text depth 4", func() Config { c := overWS(wsAddr, PingPong, TextMessages); c.Depth = 4; return c }()},
		{"ws bulk", func() Config { c := overWS(wsAddr, Bulk, AlternateMessages); c.Size = 64; return c }()},
		{"ws cycle", func() Config { c := overWS(wsAddr, Cycle, BinaryMessages); c.Size = 1000; return c }()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.cfg)
			if res.Mismatches == 0 || res.FirstMismatch == nil {
				t.Fatalf("corruption not caught: %+v", res)
			}
			m := res.FirstMismatch
			if m.Offset != at || m.Got != m.Want^0x20 {
				t.Errorf("first mismatch %+v, want offset %d with bit 0x20 flipped", m, at)
			}
		})
	}
}

// An echo that is not the message sent, whole and of its type, is a
// mismatch that says how.
func TestWebSocketEchoOfTheWrongShapeIsCaught(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mode  Mode
		types MessageType
		reply wsReply
		want  string
	}{
		{"type changed", PingPong, BinaryMessages, func(_ int, _ websocket.MessageType, msg []byte) []wsMessage {
			return []wsMessage{{websocket.MessageText, msg}}
		}, "message 1, sent as binary, came back as text; an echo keeps the type"},
		{"alternation lost", PingPong, AlternateMessages, func(_ int, _ websocket.MessageType, msg []byte) []wsMessage {
			return []wsMessage{{websocket.MessageBinary, msg}}
		}, "came back as binary"},
		{"split", PingPong, BinaryMessages, func(_ int, typ websocket.MessageType, msg []byte) []wsMessage {
			return []wsMessage{{typ, msg[:10]}, {typ, msg[10:]}}
		}, "message 1 came back as a message of 10 bytes, not the 64 sent"},
		{"merged", PingPong, BinaryMessages, mergeFirstTwo(), "message 1 came back longer than the 64 bytes sent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := overWS(serveWS(t, tt.reply), tt.mode, tt.types)
			cfg.Conns, cfg.Depth = 1, 2
			res := run(t, cfg)
			if res.Mismatches == 0 || !strings.Contains(res.FirstMismatch.Text, tt.want) {
				t.Fatalf("mismatches %d, first %+v; want %q", res.Mismatches, res.FirstMismatch, tt.want)
			}
			if res.Errors != 0 {
				t.Errorf("a mismatch also counted as an error: %v", res.ErrorsByKind)
			}
		})
	}
}

// mergeFirstTwo echoes the first two messages of a connection as one,
// which it needs depth 2 to see.
func mergeFirstTwo() wsReply {
	var held []byte
	return func(i int, typ websocket.MessageType, msg []byte) []wsMessage {
		switch i {
		case 0:
			held = msg
			return nil
		case 1:
			return []wsMessage{{typ, append(held, msg...)}}
		}
		return []wsMessage{{typ, msg}}
	}
}

// Each mode runs over TLS and WebSocket against correct servers, and the
// report names the URL and the message type.
func TestEveryModeOverTLSAndWebSocket(t *testing.T) {
	tlsAddr := serveTLS(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*tls.Conn).CloseWrite()
	})
	wsAddr := serveWS(t, echoWS)
	for _, mode := range []Mode{PingPong, Bulk, Cycle, Idle} {
		for _, cfg := range []Config{overTLS(tlsAddr, mode), overWS(wsAddr, mode, AlternateMessages)} {
			t.Run(string(cfg.Transport)+" "+string(mode), func(t *testing.T) {
				res := run(t, cfg)
				if err := res.Err(); err != nil || res.Ops == 0 {
					t.Fatalf("Err() = %v, ops %d", err, res.Ops)
				}
				want := string(cfg.Transport) + "://" + cfg.Addr
				if !strings.HasPrefix(res.URL, want) {
					t.Errorf("URL %q, want %q", res.URL, want)
				}
				if (cfg.Transport == target.WS) != (res.MessageType == AlternateMessages) {
					t.Errorf("message type %q", res.MessageType)
				}
			})
		}
	}
}

// A Config that mixes transports and modes wrongly is refused.
func TestTransportValidation(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Addr: "127.0.0.1:1", Mode: UDP, Transport: target.WS}, "udp mode runs over UDP, not ws"},
		{Config{Addr: "127.0.0.1:1", Transport: target.UDP}, "pingpong mode runs over TCP, TLS or WebSocket, not UDP"},
		{Config{Addr: "127.0.0.1:1", Transport: "quic"}, `unknown transport "quic"`},
		{Config{Addr: "127.0.0.1:1", MessageType: TextMessages}, "a message type applies to ws and wss, not tcp"},
		{Config{Addr: "127.0.0.1:1", Transport: target.WS, MessageType: "utf8"}, `unknown message type "utf8"`},
		{Config{Addr: "127.0.0.1:1", TLS: &tls.Config{}}, "a TLS configuration applies to tls and wss, not tcp"},
		{Config{Addr: "127.0.0.1:1", Path: "/x"}, "a path applies to ws and wss, not tcp"},
	} {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.want)
		}
	}
	if _, err := Run(context.Background(), Config{Addr: "127.0.0.1:1", Mode: UDP, Transport: target.TLS}); err == nil {
		t.Error("Run took udp over tls")
	}
}
