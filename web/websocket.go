package web

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// bufferSize is the most of a message a connection holds at once, and only
// while the message is in flight. A message that fits is echoed as one
// frame once it has all arrived; a longer one is streamed back in pieces of
// this size as it arrives, so that memory per connection does not grow with
// MaxMessage. The next message is not read until the echo is written.
const bufferSize = 32 << 10

// websocketGoingAway is the close code of a drain and of an idle timeout.
const websocketGoingAway = websocket.StatusGoingAway

// session is one WebSocket connection being echoed.
type session struct {
	conn   *websocket.Conn
	raw    net.Conn           // the hijacked connection, to end it whatever it is doing
	ctx    context.Context    // bounds every read and write of the echo
	cancel context.CancelFunc // ends them at once

	mu      sync.Mutex
	busy    bool // a message is being echoed
	pending bool // a close waits for the echo in progress
	ending  bool // the close handshake has started
	code    websocket.StatusCode
	reason  string
	closers sync.WaitGroup
}

// The reasons of the session limits' close frames, as the log names them.
const (
	reasonSessionDuration = "max-session-duration"
	reasonSessionBytes    = "max-session-bytes"
)

// end starts the close handshake with code and reason: at once when now or
// between messages, otherwise as soon as the echo in progress is written.
// It reports false if a close had already started.
func (s *session) end(code websocket.StatusCode, reason string, now bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending || s.pending {
		return false
	}
	s.code, s.reason = code, reason
	if s.busy && !now {
		s.pending = true
		return true
	}
	s.ending = true
	// Close writes the frame and waits for the client's; the echo loop,
	// blocked reading, sees the client's close and returns.
	s.closers.Add(1)
	go func() {
		defer s.closers.Done()
		s.conn.Close(code, reason)
	}()
	return true
}

// abort ends the connection without a handshake.
func (s *session) abort() {
	s.cancel()
	s.raw.Close()
}

// begin marks a message in flight; false means a close has started.
func (s *session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy = true
	return !s.ending
}

// finish marks the echo written, and starts a close that waited for it.
func (s *session) finish() (closed bool) {
	s.mu.Lock()
	s.busy = false
	pending := s.pending
	if pending {
		s.pending, s.ending = false, true
	}
	s.mu.Unlock()
	if pending {
		s.conn.Close(s.code, s.reason)
	}
	return pending
}

// over marks the echo ended: no close handshake starts from now on, so
// that those started are all there is to wait for.
func (s *session) over() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ending, s.pending = true, false
}

// ourReason is the reason of a close the server started, or "".
func (s *session) ourReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending {
		return s.reason
	}
	return ""
}

func (h *Handler) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if h.isClosing() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	if h.adoptWebSocket(w, r) {
		return
	}
	hw := &hijackWriter{ResponseWriter: w}
	conn, err := websocket.Accept(hw, r, &websocket.AcceptOptions{
		// Any page may use a public echo: it keeps no cookies or state
		// that a cross-site page could abuse, so the Origin is not checked.
		InsecureSkipVerify: true,
		// Compression would hold a window per connection and make the
		// bytes on the wire differ from the bytes echoed.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has answered the request with the reason.
		h.logger().Debug("websocket upgrade refused", "remote", r.RemoteAddr, "reason", err)
		return
	}
	// echo enforces MaxMessage, with a reason a person can read.
	conn.SetReadLimit(-1)
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{conn: conn, raw: hw.conn, ctx: ctx, cancel: cancel}
	if !h.track(s) {
		cancel()
		conn.Close(websocketGoingAway, "server shutting down")
		return
	}
	// The echo gets a goroutine of its own, and net/http's, with its
	// request and response and the stack that served them, ends: an idle
	// WebSocket holds only what it needs.
	go h.serveSession(s, r.RemoteAddr)
}

// serveSession echoes on s until it ends, then logs how it went.
func (h *Handler) serveSession(s *session, remote string) {
	defer h.untrack(s)
	defer s.cancel()
	start := time.Now()
	var idle *time.Timer
	progress := func() {}
	if h.IdleTimeout > 0 {
		idle = time.AfterFunc(h.IdleTimeout, func() { s.end(websocketGoingAway, "idle timeout", true) })
		progress = func() { idle.Reset(h.IdleTimeout) }
	}
	if h.MaxSessionDuration > 0 {
		limit := time.AfterFunc(h.MaxSessionDuration, func() {
			if s.end(websocket.StatusPolicyViolation, reasonSessionDuration, false) {
				h.stats.sessionDuration.Add(1)
			}
		})
		defer limit.Stop()
	}
	messages, bytes, reason := h.echoLoop(s, progress)
	if idle != nil {
		idle.Stop()
	}
	s.over()
	s.closers.Wait()
	h.logger().Debug("websocket closed", "remote", remote, "messages", messages,
		"bytes_in", bytes, "bytes_out", bytes, "duration", time.Since(start), "reason", reason)
}

// echoLoop echoes messages until the connection ends, and says why it
// ended.
func (h *Handler) echoLoop(s *session, progress func()) (messages, bytes int64, reason string) {
	for {
		typ, rd, err := s.conn.Reader(s.ctx)
		if err != nil {
			return messages, bytes, h.endReason(s, err)
		}
		if !s.begin() {
			return messages, bytes, s.ourReason()
		}
		n, err := h.echo(s.ctx, s.conn, typ, rd, progress)
		bytes += n
		if err != nil {
			return messages, bytes, h.endReason(s, err)
		}
		messages++
		h.stats.messages.Add(1)
		h.stats.messageBytes.Add(uint64(n))
		progress()
		if h.MaxSessionBytes > 0 && bytes >= h.MaxSessionBytes && s.end(websocket.StatusPolicyViolation, reasonSessionBytes, false) {
			h.stats.sessionBytes.Add(1)
		}
		if s.finish() {
			return messages, bytes, s.ourReason()
		}
	}
}

// endReason names why a connection ended, from the error that ended its
// loop, and completes the close handshake if one is under way.
func (h *Handler) endReason(s *session, err error) string {
	if r := s.ourReason(); r != "" {
		return r
	}
	if errors.Is(err, errTooBig) {
		h.stats.tooBig.Add(1)
		reason := fmt.Sprintf("message too big: the most is %d bytes", h.maxMessage())
		s.conn.Close(websocket.StatusMessageTooBig, reason)
		return reason
	}
	if errors.Is(err, errNotUTF8) {
		s.conn.Close(websocket.StatusInvalidFramePayloadData, errNotUTF8.Error())
		return errNotUTF8.Error()
	}
	if code := websocket.CloseStatus(err); code != -1 {
		return fmt.Sprintf("client closed (%d)", code)
	}
	// The library sends its own close for most protocol errors, and then
	// this Close ends at once, as it does on a lost connection; the one it
	// leaves to us, a client's unmasked frame, is a protocol error too.
	s.conn.Close(websocket.StatusProtocolError, "")
	return "error: " + err.Error()
}

// errTooBig ends the echo of a message longer than MaxMessage.
var errTooBig = errors.New("message too big")

// errNotUTF8 ends the echo of a text message that is not UTF-8, which RFC
// 6455 section 8.1 says to fail with 1007 rather than pass on.
var errNotUTF8 = errors.New("a text message that is not UTF-8")

// echo writes the message rd back with the same type: as one frame when it
// fits in a buffer, else streamed piece by piece as it arrives. It returns
// the bytes echoed, never more than MaxMessage: the piece that would go
// past it is not echoed, and the echo ends with errTooBig.
func (h *Handler) echo(ctx context.Context, conn *websocket.Conn, typ websocket.MessageType, rd io.Reader, progress func()) (int64, error) {
	most := h.maxMessage()
	rd = io.LimitReader(rd, most+1) // one byte past the limit tells
	buf := h.buffer()
	defer h.bufs.Put(buf)
	var w io.WriteCloser // nil until the message outgrows one buffer
	var total int64
	var text textCheck
	for {
		n, err := io.ReadFull(rd, buf[:])
		end := err == io.EOF || err == io.ErrUnexpectedEOF
		switch {
		case err != nil && !end:
			return total, err
		case total+int64(n) > most:
			return total, errTooBig
		case typ == websocket.MessageText && (!text.valid(buf[:n]) || end && !text.complete()):
			return total, errNotUTF8
		}
		progress()
		if end && w == nil {
			return int64(n), conn.Write(ctx, typ, buf[:n])
		}
		if w == nil {
			if w, err = conn.Writer(ctx, typ); err != nil {
				return total, err
			}
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return total, err
		}
		total += int64(n)
		if end {
			return total, w.Close()
		}
	}
}

func (h *Handler) buffer() *[bufferSize]byte {
	if b, ok := h.bufs.Get().(*[bufferSize]byte); ok {
		return b
	}
	return new([bufferSize]byte)
}

// wsBufferSize is the size of a WebSocket connection's read and write
// buffers, which it holds while idle. Frame headers and small messages go
// through them; larger payloads bypass them.
const wsBufferSize = 1 << 10

// hijackWriter keeps the connection the WebSocket library hijacks, so that
// a drain past its deadline can close it whatever the library is doing;
// and hands the library buffers of wsBufferSize instead of net/http's 4 KiB
// ones.
type hijackWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return c, brw, err
	}
	w.conn = c
	// What the client sent after its upgrade request may already be in
	// net/http's buffer. It must be in the new buffer too, not merely
	// ahead in its source: the library takes what is buffered and then
	// reads the connection itself.
	early, _ := brw.Reader.Peek(brw.Reader.Buffered())
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), c), max(wsBufferSize, len(early)))
	if len(early) > 0 {
		br.Peek(len(early)) // served by the bytes.Reader alone: no wait on c
	}
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(c, wsBufferSize)), nil
}

// Unwrap lets http.ResponseController find the ResponseWriter's other
// methods.
func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
