package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/echod/echod/internal/wsclient"
)

// The opcodes wsload sends or answers (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

// A mismatch is an echo that came back but is not what was sent: the
// server's fault, told apart from a connection that failed.
type mismatch struct{ what string }

func (m *mismatch) Error() string { return m.what }

// wsConn is one client WebSocket, written for load: its frames are built
// in buffers it keeps, so an exchange allocates nothing, and every echo is
// compared byte for byte with what was sent. The handshake and frames are
// written here rather than with internal/wsclient because wsload needs
// chosen source addresses and no allocation per message.
type wsConn struct {
	c    net.Conn
	br   *bufio.Reader
	rng  *mrand.PCG
	out  []byte // the last frame sent: header, mask, masked payload
	echo []byte // the echo being read
	ctl  []byte // a control frame's payload, for a ping's pong
}

// handshake sends the opening handshake for u over c and checks the
// server's 101 answer.
func handshake(c net.Conn, u *url.URL) (*wsConn, error) {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\nUser-Agent: echod-wsload\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return nil, fmt.Errorf("send the upgrade request: %w", err)
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, fmt.Errorf("read the answer to the upgrade request: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, fmt.Errorf("the server answered the upgrade with HTTP %s, not 101 Switching Protocols", resp.Status)
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), wsclient.AcceptKey(key); got != want {
		return nil, fmt.Errorf("the upgrade's Sec-WebSocket-Accept is %q, want %q", got, want)
	}
	var seed [16]byte
	rand.Read(seed[:])
	return &wsConn{
		c:   c,
		br:  br,
		rng: mrand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])),
	}, nil
}

// writeFrame sends payload as one final frame of type op, masked with a
// fresh key as a client must.
func (ws *wsConn) writeFrame(op byte, payload []byte) error {
	hdr := append(ws.out[:0], 0x80|op)
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
	key := uint32(ws.rng.Uint64())
	hdr = binary.BigEndian.AppendUint32(hdr, key)
	frame := append(hdr, payload...)
	mask(frame[len(hdr):], key)
	ws.out = frame
	if _, err := ws.c.Write(frame); err != nil {
		return fmt.Errorf("send a frame: %w", err)
	}
	return nil
}

// mask XORs p with the masking key (RFC 6455 section 5.3), eight bytes at
// a time.
func mask(p []byte, key uint32) {
	var k [4]byte
	binary.BigEndian.PutUint32(k[:], key)
	k64 := uint64(binary.LittleEndian.Uint32(k[:]))
	k64 |= k64 << 32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k64)
	}
	for ; i < len(p); i++ {
		p[i] ^= k[i&3]
	}
}

// exchange sends msg as one binary message and reads the echo, answering
// pings on the way. An echo that differs in type, length or any byte is a
// *mismatch saying where; a failed connection is any other error.
func (ws *wsConn) exchange(msg []byte) error {
	if err := ws.writeFrame(opBinary, msg); err != nil {
		return err
	}
	ws.echo = ws.echo[:0]
	op := -1 // the echo's type, once its first frame has come
	for {
		var h [2]byte
		if _, err := io.ReadFull(ws.br, h[:]); err != nil {
			return readError(err, len(ws.echo), len(msg))
		}
		fin, fop := h[0]&0x80 != 0, h[0]&0x0f
		if h[0]&0x70 != 0 {
			return &mismatch{fmt.Sprintf("a frame with reserved bits set (0x%02x), with no extension agreed", h[0]&0x70)}
		}
		if h[1]&0x80 != 0 {
			return &mismatch{"a masked frame from the server (RFC 6455 section 5.1 forbids it)"}
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(ws.br, b[:]); err != nil {
				return readError(err, len(ws.echo), len(msg))
			}
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(ws.br, b[:]); err != nil {
				return readError(err, len(ws.echo), len(msg))
			}
			n = binary.BigEndian.Uint64(b[:])
		}
		switch fop {
		case opPing, opPong, opClose:
			if n > 125 || !fin {
				return &mismatch{"a control frame that is fragmented or longer than 125 bytes"}
			}
			ws.ctl = append(ws.ctl[:0], make([]byte, n)...)
			if _, err := io.ReadFull(ws.br, ws.ctl); err != nil {
				return readError(err, len(ws.echo), len(msg))
			}
			switch fop {
			case opPing:
				if err := ws.writeFrame(opPong, ws.ctl); err != nil {
					return err
				}
			case opClose:
				return fmt.Errorf("the server closed the WebSocket (%s) after %d of %d bytes echoed", closeCode(ws.ctl), len(ws.echo), len(msg))
			}
			continue
		case opText, opBinary:
			if op >= 0 {
				return &mismatch{"a new message began inside the unfinished echo"}
			}
			op = int(fop)
		case opContinuation:
			if op < 0 {
				return &mismatch{"a continuation frame with no message begun"}
			}
		default:
			return &mismatch{fmt.Sprintf("a frame with the unknown opcode 0x%x", fop)}
		}
		if n > uint64(len(msg)-len(ws.echo)) {
			return &mismatch{fmt.Sprintf("an echo longer than the %d bytes sent (a frame of %d bytes after %d)", len(msg), n, len(ws.echo))}
		}
		start := len(ws.echo)
		ws.echo = append(ws.echo, make([]byte, n)...)
		if _, err := io.ReadFull(ws.br, ws.echo[start:]); err != nil {
			return readError(err, start, len(msg))
		}
		if fin {
			break
		}
	}
	if op != opBinary {
		return &mismatch{fmt.Sprintf("a binary message of %d bytes came back as a text message", len(msg))}
	}
	if len(ws.echo) != len(msg) {
		return &mismatch{fmt.Sprintf("a binary message of %d bytes came back as %d bytes", len(msg), len(ws.echo))}
	}
	if i := firstDiff(ws.echo, msg); i >= 0 {
		return &mismatch{fmt.Sprintf("a binary message of %d bytes came back changed: byte %d is 0x%02x, sent 0x%02x", len(msg), i, ws.echo[i], msg[i])}
	}
	return nil
}

// firstDiff is the offset of the first byte where a and b (of one length)
// differ, or -1.
func firstDiff(a, b []byte) int {
	i := 0
	for ; i+8 <= len(a); i += 8 {
		if x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]); x != 0 {
			return i + bits.TrailingZeros64(x)/8
		}
	}
	for ; i < len(a); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// readError says what a failed read cut short.
func readError(err error, got, want int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the server closed the connection after %d of %d bytes echoed", got, want)
	}
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("no whole echo in time: %d of %d bytes came back", got, want)
	}
	return fmt.Errorf("read the echo: %w", err)
}

// closeCode describes a close frame's payload.
func closeCode(p []byte) string {
	if len(p) < 2 {
		return "no code"
	}
	s := fmt.Sprintf("code %d", binary.BigEndian.Uint16(p))
	if r := strings.TrimSpace(string(p[2:])); r != "" {
		s += fmt.Sprintf(", reason %q", r)
	}
	return s
}
