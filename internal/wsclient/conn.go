// Package wsclient is a WebSocket client (RFC 6455) written for judging
// echo servers: it sends exactly the frames its caller asks for and reports
// exactly what came back, where a general-purpose library would hide both.
// echod check, send, bench and path share it.
package wsclient

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/echod/echod/internal/target"
)

// Op is a frame's opcode (RFC 6455 section 5.2).
type Op byte

// The opcodes of RFC 6455.
const (
	Continuation Op = 0x0
	Text         Op = 0x1
	Binary       Op = 0x2
	Close        Op = 0x8
	Ping         Op = 0x9
	Pong         Op = 0xa
)

// String names the opcode as the reasons of echod's tools do.
func (op Op) String() string {
	switch op {
	case Continuation:
		return "continuation"
	case Text:
		return "text"
	case Binary:
		return "binary"
	case Close:
		return "close"
	case Ping:
		return "ping"
	case Pong:
		return "pong"
	}
	return fmt.Sprintf("opcode 0x%x", byte(op))
}

// DefaultLimit is the largest frame or message a new Conn reads.
const DefaultLimit = 64 << 20

// Conn is a client's WebSocket connection.
type Conn struct {
	c    net.Conn
	br   *bufio.Reader
	stop func() bool // ends the tie between the connection and ctx

	// wmu lets a reader answer a ping while another goroutine writes
	// messages.
	wmu   sync.Mutex
	wbuf  []byte         // the last frame written, masked, kept for the next
	masks *mrand.ChaCha8 // masking keys, seeded from crypto/rand

	mr MessageReader
	// Limit is the largest frame or message read; a longer one is an
	// error. Dial sets DefaultLimit.
	Limit int64
}

// DialError is returned by Dial when nothing answered at Addr.
type DialError struct {
	Addr string
	Err  error // the cause, without the dialer's layers
}

func (e *DialError) Error() string {
	if errors.Is(e.Err, syscall.ECONNREFUSED) {
		return "nothing is listening on " + e.Addr
	}
	return fmt.Sprintf("cannot connect to %s: %v", e.Addr, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// ClosedError is the close frame a server sent when the client did not
// expect one.
type ClosedError struct {
	Code   int // 1005 when the frame had no code
	Reason string
}

func (e *ClosedError) Error() string {
	s := fmt.Sprintf("the server closed the WebSocket with %d", e.Code)
	if name := CloseCodeName(e.Code); name != "" {
		s += " (" + name + ")"
	}
	if e.Reason != "" {
		s += fmt.Sprintf(", reason %q", e.Reason)
	}
	return s
}

// CloseCodeName names the close codes of RFC 6455 section 7.4.1 that an
// echo server is likely to send, or returns "".
func CloseCodeName(code int) string {
	switch code {
	case 1000:
		return "normal closure"
	case 1001:
		return "going away"
	case 1002:
		return "protocol error"
	case 1003:
		return "unsupported data"
	case 1005:
		return "no code"
	case 1007:
		return "invalid payload"
	case 1008:
		return "policy violation"
	case 1009:
		return "message too big"
	case 1011:
		return "internal error"
	}
	return ""
}

// ParseURL checks a ws:// or wss:// URL and returns it with the address to
// dial, a port added when the URL has none.
func ParseURL(raw string) (*url.URL, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", fmt.Errorf("invalid WebSocket URL %q: %v", raw, err)
	}
	port := "80"
	switch u.Scheme {
	case "ws":
	case "wss":
		port = "443"
	default:
		return nil, "", fmt.Errorf("invalid WebSocket URL %q: want ws://HOST:PORT/PATH or wss://HOST:PORT/PATH", raw)
	}
	if u.Hostname() == "" {
		return nil, "", fmt.Errorf("invalid WebSocket URL %q: no host", raw)
	}
	if u.Port() != "" {
		port = u.Port()
	}
	return u, net.JoinHostPort(u.Hostname(), port), nil
}

// Dial connects to the ws:// or wss:// URL raw and completes the opening
// handshake, waiting up to patience for the server's answer. Every read and
// write fails once ctx has ended. When nothing answers at the URL's
// address, the error is a *DialError.
func Dial(ctx context.Context, raw string, tlsConfig *tls.Config, patience time.Duration) (*Conn, error) {
	_, addr, err := ParseURL(raw)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, unreachable(addr, err)
	}
	return Client(ctx, c, raw, tlsConfig, patience)
}

// Client runs the opening handshake of the ws:// or wss:// URL raw on c, a
// new connection to the URL's server (TLS first, for wss://), waiting up to
// patience for the server's answers. It is for a caller that connects by
// itself, from an address of its choosing or to an address looked up once
// (bench). Every read and write fails once ctx has ended. On an error, c
// is closed.
func Client(ctx context.Context, c net.Conn, raw string, tlsConfig *tls.Config, patience time.Duration) (*Conn, error) {
	u, addr, err := ParseURL(raw)
	if err != nil {
		c.Close()
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	var seed [32]byte
	rand.Read(seed[:])
	ws := &Conn{c: c, stop: stop, Limit: DefaultLimit, masks: mrand.NewChaCha8(seed)}
	ws.mr.ws = ws
	ws.SetDeadline(ctx, patience)
	if u.Scheme == "wss" {
		cfg := &tls.Config{}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = u.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"} // WebSocket upgrades HTTP/1.1
		// target.Handshake knows the servers that answer a hello with
		// something other than TLS, and says which.
		tc, err := target.Handshake(ctx, c, cfg)
		if err != nil {
			ws.Close()
			switch {
			case errors.Is(err, target.ErrEchoedHandshake):
				return nil, fmt.Errorf("wss://%s: %v; check it as %s", addr, err, addr)
			case errors.Is(err, target.ErrAnsweredHTTP):
				return nil, fmt.Errorf("wss://%s: %v; check it as ws://%s%s", addr, err, addr, u.RequestURI())
			}
			return nil, fmt.Errorf("wss://%s: %w", addr, err)
		}
		ws.c = tc
	}
	ws.br = bufio.NewReader(ws.c)
	if err := ws.handshake(ctx, u, addr, patience); err != nil {
		ws.Close()
		return nil, err
	}
	return ws, nil
}

// handshake sends the upgrade request to u, at addr, and checks the
// server's answer.
func (ws *Conn) handshake(ctx context.Context, u *url.URL, addr string, patience time.Duration) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := &http.Request{
		Method: "GET", URL: u, Host: u.Host, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{
			"Upgrade":               {"websocket"},
			"Connection":            {"Upgrade"},
			"Sec-Websocket-Key":     {key},
			"Sec-Websocket-Version": {"13"},
			"User-Agent":            {"echod"},
		},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", u.RequestURI(), u.Host)
	req.Header.Write(&b)
	b.WriteString("\r\n")
	if _, err := io.WriteString(ws.c, b.String()); err != nil {
		return fmt.Errorf("send the upgrade request: %w", err)
	}
	head, _ := ws.br.Peek(5)
	if string(head[:min(len(head), 4)]) == "GET " {
		plain := addr
		if u.Scheme == "wss" {
			// Through TLS: a TLS echo server.
			plain = "tls://" + addr
		}
		return fmt.Errorf("the server sent the WebSocket upgrade request straight back: it is a plain echo server, not WebSocket; check it as %s", plain)
	}
	resp, err := http.ReadResponse(ws.br, req)
	if err != nil {
		if IsTimeout(err) {
			return fmt.Errorf("no answer to the WebSocket upgrade request within %v", patience)
		}
		// A TLS server closes, or sends an alert, on an HTTP request.
		if u.Scheme == "ws" && !strings.HasPrefix(string(head), "HTTP/") && ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, patience)
			defer cancel()
			if target.SpeaksTLS(pctx, addr) {
				return fmt.Errorf("the server gave no HTTP answer to the WebSocket upgrade request, and it speaks TLS; check it as wss://%s%s", addr, u.RequestURI())
			}
		}
		return fmt.Errorf("read the answer to the WebSocket upgrade request: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		resp.Body.Close()
		line := strings.TrimSpace(strings.SplitN(string(body), "\n", 2)[0])
		if line != "" {
			line = ": " + line
		}
		return fmt.Errorf("the server answered the WebSocket upgrade with HTTP %s%s, not 101 Switching Protocols: is %s a WebSocket endpoint?", resp.Status, line, u.Redacted())
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), AcceptKey(key); got != want {
		return fmt.Errorf("the upgrade's Sec-WebSocket-Accept is %q, want %q (RFC 6455 section 4.2.2)", got, want)
	}
	return nil
}

// AcceptKey is the Sec-WebSocket-Accept a server answers to a
// Sec-WebSocket-Key (RFC 6455 section 4.2.2).
func AcceptKey(key string) string {
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// unreachable is the error of a failed connection to addr, its cause
// unwrapped from the dialer's layers so that the message stays short.
func unreachable(addr string, err error) *DialError {
	var dnsErr *net.DNSError
	var sysErr *os.SyscallError
	var opErr *net.OpError
	switch {
	case errors.As(err, &dnsErr):
		err = dnsErr
	case errors.As(err, &sysErr):
		err = sysErr.Err
	case errors.As(err, &opErr):
		err = opErr.Err
	}
	return &DialError{Addr: addr, Err: err}
}

// IsTimeout reports whether err is a read or write deadline passing.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close closes the connection without a close handshake.
func (ws *Conn) Close() error {
	ws.stop()
	return ws.c.Close()
}

// NetConn returns the connection under the WebSocket (TLS for wss://).
func (ws *Conn) NetConn() net.Conn { return ws.c }

// SetDeadline bounds the reads and writes that follow by now+d, or ctx's
// end if that comes first.
func (ws *Conn) SetDeadline(ctx context.Context, d time.Duration) {
	t := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && dl.Before(t) {
		t = dl
	}
	if ctx.Err() != nil {
		t = time.Unix(1, 0)
	}
	ws.c.SetDeadline(t)
}

// WriteFrame writes one masked frame, as a client must. It may be called
// while another goroutine reads.
func (ws *Conn) WriteFrame(fin bool, op Op, payload []byte) error {
	ws.wmu.Lock()
	defer ws.wmu.Unlock()
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	hdr := append(ws.wbuf[:0], b0)
	switch n := len(payload); {
	case n < 126:
		hdr = append(hdr, 0x80|byte(n))
	case n <= 0xffff:
		hdr = append(hdr, 0x80|126)
		hdr = binary.BigEndian.AppendUint16(hdr, uint16(n))
	default:
		hdr = append(hdr, 0x80|127)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(n))
	}
	// A fresh key for every frame, as RFC 6455 section 5.3 asks, from a
	// generator seeded from crypto/rand: a system call per frame would
	// cost more than the frame.
	key := uint32(ws.masks.Uint64())
	hdr = binary.LittleEndian.AppendUint32(hdr, key)
	masked := append(hdr, payload...)
	mask(masked[len(hdr):], key)
	ws.wbuf = masked
	if cap(ws.wbuf) > 1<<20 {
		ws.wbuf = nil // one large message does not pin its buffer
	}
	if _, err := ws.c.Write(masked); err != nil {
		return fmt.Errorf("send a %s frame: %w", op, err)
	}
	return nil
}

// mask XORs b with the masking key, whose bytes are in little-endian
// order as they go on the wire: eight bytes at a time, then the rest.
func mask(b []byte, key uint32) {
	k := uint64(key) | uint64(key)<<32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
	}
	for ; i < len(b); i++ {
		b[i] ^= byte(key >> (8 * (i & 3)))
	}
}

// WriteMessage sends p as one message of type op, in one frame.
func (ws *Conn) WriteMessage(op Op, p []byte) error {
	return ws.WriteFrame(true, op, p)
}

// Frame is one frame as read.
type Frame struct {
	Fin     bool
	Op      Op
	Payload []byte
}

// ReadFrame reads one frame, refusing one longer than ws.Limit.
func (ws *Conn) ReadFrame() (Frame, error) {
	f, n, err := ws.readHeader()
	if err != nil {
		return f, err
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(ws.br, f.Payload); err != nil {
		return f, err
	}
	return f, nil
}

// readHeader reads a frame's header and returns the frame, without its
// payload, and the payload's length.
func (ws *Conn) readHeader() (Frame, int64, error) {
	var h [2]byte
	if _, err := io.ReadFull(ws.br, h[:]); err != nil {
		return Frame{}, 0, err
	}
	f := Frame{Fin: h[0]&0x80 != 0, Op: Op(h[0] & 0x0f)}
	if h[0]&0x70 != 0 {
		return f, 0, fmt.Errorf("the server sent a frame with reserved bits set (0x%02x), with no extension agreed", h[0]&0x70)
	}
	if h[1]&0x80 != 0 {
		return f, 0, errors.New("the server sent a masked frame; RFC 6455 section 5.1 says a server must not mask")
	}
	n := int64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(ws.br, b[:]); err != nil {
			return f, 0, err
		}
		n = int64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(ws.br, b[:]); err != nil {
			return f, 0, err
		}
		u := binary.BigEndian.Uint64(b[:])
		if u > uint64(ws.Limit) {
			return f, 0, fmt.Errorf("the server sent a %s frame of %d bytes, more than the %d expected", f.Op, u, ws.Limit)
		}
		n = int64(u)
	}
	if n > ws.Limit {
		return f, 0, fmt.Errorf("the server sent a %s frame of %d bytes, more than the %d expected", f.Op, n, ws.Limit)
	}
	if f.Op >= Close && (n > 125 || !f.Fin) {
		return f, 0, fmt.Errorf("the server sent a %s frame that is fragmented or longer than 125 bytes (RFC 6455 section 5.5)", f.Op)
	}
	return f, n, nil
}

// ReadMessage reads the next message, putting its frames together. It
// answers pings as it goes and skips pongs; a close frame ends it with a
// *ClosedError.
func (ws *Conn) ReadMessage() (op Op, msg []byte, frames int, err error) {
	for {
		f, err := ws.ReadFrame()
		if err != nil {
			return op, msg, frames, err
		}
		switch f.Op {
		case Ping:
			if err := ws.WriteFrame(true, Pong, f.Payload); err != nil {
				return op, msg, frames, err
			}
			continue
		case Pong:
			continue
		case Close:
			return op, msg, frames, Closed(f.Payload)
		case Continuation:
			if frames == 0 {
				return op, msg, frames, errors.New("the server sent a continuation frame with no message started")
			}
		case Text, Binary:
			if frames > 0 {
				return op, msg, frames, fmt.Errorf("the server started a %s message inside an unfinished %s one", f.Op, op)
			}
			op = f.Op
		default:
			return op, msg, frames, fmt.Errorf("the server sent a frame with the unknown %s", f.Op)
		}
		frames++
		if int64(len(msg)+len(f.Payload)) > ws.Limit {
			return op, msg, frames, fmt.Errorf("the server's message goes on past %d bytes", ws.Limit)
		}
		msg = append(msg, f.Payload...)
		if f.Fin {
			return op, msg, frames, nil
		}
	}
}

// Closed is the error of a close frame with payload p.
func Closed(p []byte) *ClosedError {
	if len(p) < 2 {
		return &ClosedError{Code: 1005}
	}
	return &ClosedError{Code: int(binary.BigEndian.Uint16(p)), Reason: string(p[2:])}
}

// ClosePayload is a close frame's payload: the code, then the reason.
func ClosePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

// Goodbye sends a close (1000) and ends the connection without waiting
// for the server's answer: for clients whose work is over.
func (ws *Conn) Goodbye() {
	ws.c.SetWriteDeadline(time.Now().Add(time.Second))
	ws.WriteFrame(true, Close, ClosePayload(1000, ""))
	ws.Close()
}

// CloseHandshake sends a close (1000) and waits up to patience for the
// server's.
func (ws *Conn) CloseHandshake(ctx context.Context, patience time.Duration) {
	ws.SetDeadline(ctx, patience)
	if ws.WriteFrame(true, Close, ClosePayload(1000, "")) != nil {
		return
	}
	for {
		f, err := ws.ReadFrame()
		if err != nil || f.Op == Close {
			return
		}
	}
}

// Reader returns the buffered reader of the connection's bytes, for a
// caller that reads past the frames (what comes after a close).
func (ws *Conn) Reader() io.Reader { return ws.br }
