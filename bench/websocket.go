package bench

import (
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/echod/echod/internal/wsclient"
)

// MessageType is the type of a WebSocket run's messages.
type MessageType string

// The message types of a WebSocket run.
const (
	BinaryMessages    MessageType = "binary"
	TextMessages      MessageType = "text" // printable payloads, valid UTF-8
	AlternateMessages MessageType = "alternate"
)

// wsConn runs a session that speaks in bytes over a WebSocket: each Write
// sends its bytes as one message, and Read returns the payloads of the
// echoed messages one after another, checking on the way that each came
// back as one message of the type and the size sent. Every message of a
// run has the run's Size (Idle: one byte), so the reader knows each one's
// length. The session checks the bytes, as over TCP.
type wsConn struct {
	net.Conn // under the WebSocket: deadlines and addresses
	ws       *wsclient.Conn
	msgs     *wsclient.MessageReader
	size     int64
	types    MessageType
	first    int64 // 0 or 1: with alternating types, whether the first message is text

	// The writer's count and the reader's: one goroutine each.
	sent, read int64
	got        int64 // bytes read of the current message; -1 between messages

	mismatch func(error) error // counts a mismatch, returns errCounted
}

func newWSConn(ws *wsclient.Conn, cfg Config, first int64, mismatch func(error) error) *wsConn {
	return &wsConn{
		Conn:     ws.NetConn(),
		ws:       ws,
		msgs:     ws.Messages(),
		size:     int64(cfg.Size),
		types:    cfg.MessageType,
		first:    first,
		got:      -1,
		mismatch: mismatch,
	}
}

// op is the type of message i of the connection.
func (c *wsConn) op(i int64) wsclient.Op {
	switch {
	case c.types == TextMessages,
		c.types == AlternateMessages && (i+c.first)&1 == 1:
		return wsclient.Text
	}
	return wsclient.Binary
}

// Write sends p as one message.
func (c *wsConn) Write(p []byte) (int, error) {
	op := c.op(c.sent)
	c.sent++
	if err := c.ws.WriteMessage(op, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read reads the echoed messages' payloads as one stream. The server's
// normal close (1000) is the end of the stream, as a TCP FIN is.
func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.got < 0 {
			op, err := c.msgs.Next()
			var closed *wsclient.ClosedError
			if errors.As(err, &closed) && closed.Code == 1000 {
				return 0, io.EOF
			}
			if err != nil {
				return 0, err
			}
			if want := c.op(c.read); op != want {
				return 0, c.mismatch(fmt.Errorf("message %d, sent as %s, came back as %s; an echo keeps the type", c.read+1, want, op))
			}
			c.read++
			c.got = 0
		}
		n, err := c.msgs.Read(p)
		c.got += int64(n)
		if c.got > c.size {
			return n, c.mismatch(fmt.Errorf("message %d came back longer than the %d bytes sent (as one message, or merged with the next)", c.read, c.size))
		}
		if err == io.EOF {
			if c.got < c.size {
				return n, c.mismatch(fmt.Errorf("message %d came back as a message of %d bytes, not the %d sent (split, or cut short)", c.read, c.got, c.size))
			}
			c.got = -1
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// CloseWrite sends a close frame (1000): a WebSocket's half-close, after
// which the server echoes what it has and closes in turn.
func (c *wsConn) CloseWrite() error {
	return c.ws.WriteFrame(true, wsclient.Close, wsclient.ClosePayload(1000, ""))
}

// Close closes the connection without a close handshake.
func (c *wsConn) Close() error { return c.ws.Close() }
