package web

import (
	"encoding/base64"
	"net/http"
	"net/netip"
	"strings"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/wsclient"
)

// Adopter serves a connection from the end of its WebSocket upgrade on:
// *echo.Server is one, and with its epoll engine serves it on its event
// loops, where an idle WebSocket holds no goroutine and no buffer.
type Adopter interface {
	Adopt(echo.Handoff) error
}

// adoptWebSocket answers r's upgrade and hands the connection to
// h.Adopter, with a frameEcho as its processor. It reports false, having
// written nothing, for a request it leaves to the goroutine echo: one over
// TLS or HTTP/2, and any upgrade that is not plainly valid, which
// websocket.Accept answers with its reason.
func (h *Handler) adoptWebSocket(w http.ResponseWriter, r *http.Request) bool {
	key := r.Header.Get("Sec-WebSocket-Key")
	if h.Adopter == nil || r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor < 1 ||
		r.Method != http.MethodGet || !hasToken(r.Header, "Connection", "upgrade") ||
		r.Header.Get("Sec-WebSocket-Version") != "13" || !validKey(key) {
		return false
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false // nothing was written: the goroutine echo tries
	}
	reply := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: " + wsclient.AcceptKey(key) + "\r\n\r\n"
	if _, err := conn.Write([]byte(reply)); err != nil {
		conn.Close()
		return true
	}
	// What the client sent after its request (frames, already) is in
	// net/http's buffer; the server serves it first. Adopt copies it.
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	h.stats.open.Add(1)
	h.stats.total.Add(1)
	err = h.Adopter.Adopt(echo.Handoff{Conn: conn, Remote: remote, Buffered: early, Processor: newFrameEcho(h)})
	if err != nil {
		// Adopt has closed the connection; Ended will not be called.
		h.stats.open.Add(^uint64(0))
		h.logger().Debug("websocket not served", "remote", r.RemoteAddr, "reason", err)
	}
	return true
}

// hasToken reports whether the comma-separated header name holds token,
// in any case.
func hasToken(hd http.Header, name, token string) bool {
	for _, v := range hd.Values(name) {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// validKey reports whether key is a Sec-WebSocket-Key: 16 bytes in base64.
func validKey(key string) bool {
	b, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(b) == 16
}
