package web

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/echod/echod/echo"
)

// The opcodes of RFC 6455 section 5.2.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes of RFC 6455 section 7.4.1 that the frame echo sends.
const (
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closeInvalidData     = 1007
	closePolicyViolation = 1008
	closeTooBig          = 1009
)

// maxHeader is the longest client frame header: two bytes, a 64-bit
// length and the mask key.
const maxHeader = 2 + 8 + 4

// maxControl is the longest payload of a ping, pong or close.
const maxControl = 125

// frameEcho is the WebSocket echo as an echo.Processor, for a connection
// the echo server serves after its upgrade (on its event loop, with no
// goroutine or buffer while idle). It turns each client frame into the same
// frame unmasked, writing back what arrives as it arrives: a frame that
// comes in one read goes back as one frame, with its opcode and FIN bit; one
// cut by the network goes back in pieces, the later ones continuations, so
// that nothing waits for the rest of a frame. Message boundaries are always
// kept. Pings are answered, a client's close is returned, and what breaks
// the protocol or a limit ends the connection with the close code the
// goroutine echo (echoLoop) uses. It holds a cut header, a mask and a few
// counters: what an idle WebSocket costs.
type frameEcho struct {
	h *Handler // MaxMessage and the counters

	head  [maxHeader]byte // the start of a header cut by a read
	headN uint8

	// The frame in progress, once its header has come.
	inFrame bool
	op      byte  // its opcode
	fin     bool  // whether it ends its message
	left    int64 // payload bytes still to come
	mask    [4]byte
	maskAt  uint8 // index in mask of the next payload byte
	cont    bool  // a piece of it has been echoed: the rest are continuations

	// The data message in progress, across its frames.
	msgOp  byte // opText or opBinary; 0 between messages
	msgLen int64
	text   textCheck

	ctrl   []byte // a control frame's payload cut by a read, unmasked
	quiet  bool   // the last Process moved pings and pongs only
	closed bool   // a close frame was written; nothing more is echoed
}

// newFrameEcho returns the frame echo of a WebSocket connection served by h.
func newFrameEcho(h *Handler) *frameEcho {
	return &frameEcho{h: h}
}

// Process echoes the frames in in, appending the reply to out. end asks the
// server to end the connection once out is written: after a close frame.
func (f *frameEcho) Process(out, in []byte) (_ []byte, end bool) {
	f.quiet = true
	for len(in) > 0 && !f.closed {
		if !f.inFrame {
			var n int
			n, out = f.header(out, in)
			in = in[n:]
			continue
		}
		n := int(min(int64(len(in)), f.left))
		out = f.payload(out, in[:n])
		in = in[n:]
	}
	return out, f.closed
}

// Quiet reports whether the last Process moved pings and pongs only,
// which an idle timeout does not count as activity.
func (f *frameEcho) Quiet() bool { return f.quiet }

// Stop appends the close frame for an end the server decides.
func (f *frameEcho) Stop(out []byte, why echo.Reason) []byte {
	if f.closed {
		return out
	}
	switch why {
	case echo.ReasonIdleTimeout:
		return f.close(out, closeGoingAway, "idle timeout")
	case echo.ReasonMaxSessionDuration:
		// The server that decided it counts it, as its own limit.
		return f.close(out, closePolicyViolation, reasonSessionDuration)
	case echo.ReasonMaxSessionBytes:
		return f.close(out, closePolicyViolation, reasonSessionBytes)
	}
	return f.close(out, closeGoingAway, "server shutting down")
}

// Busy reports whether a message is part-way through: a drain's or a
// session limit's close waits for its end, as on a goroutine.
func (f *frameEcho) Busy() bool { return f.msgOp != 0 }

// Ended counts the connection closed.
func (f *frameEcho) Ended() { f.h.stats.open.Add(^uint64(0)) }

// header consumes what in holds of the next frame's header and returns
// how much it took. Once the header is whole it checks it and starts the
// frame (a frame with no payload is echoed at once).
func (f *frameEcho) header(out, in []byte) (int, []byte) {
	n := copy(f.head[f.headN:], in)
	have := int(f.headN) + n
	if have < 2 {
		f.headN = uint8(have)
		return n, out
	}
	if f.head[1]&0x80 == 0 {
		// Without a mask key the header's length is not known: close
		// now, not when more bytes come.
		return n, f.close(out, closeProtocolError, "an unmasked frame from a client")
	}
	size := 2 + 4 // the two first bytes, the mask key
	switch f.head[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if have < size {
		f.headN = uint8(have)
		return n, out
	}
	used := size - int(f.headN) // of in; the rest is payload or the next frame
	f.headN = 0
	h := f.head[:size]
	f.fin, f.op = h[0]&0x80 != 0, h[0]&0x0f
	length := int64(h[1] & 0x7f)
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		u := binary.BigEndian.Uint64(h[2:])
		if u>>63 != 0 {
			return used, f.close(out, closeProtocolError, "a frame length with its top bit set")
		}
		length = int64(u)
	}
	copy(f.mask[:], h[size-4:])
	f.inFrame, f.left, f.maskAt, f.cont = true, length, 0, false
	if reason := f.invalid(h); reason != "" {
		return used, f.close(out, closeProtocolError, reason)
	}
	if f.op >= opClose {
		if f.op == opClose {
			f.quiet = false
		}
		if length == 0 {
			out = f.control(out, nil)
		}
		return used, out
	}
	f.quiet = false
	if f.msgOp == 0 {
		f.msgOp, f.msgLen = f.op, 0
	}
	if length > f.h.maxMessage()-f.msgLen { // (msgLen+length could overflow)
		f.h.stats.tooBig.Add(1)
		return used, f.close(out, closeTooBig, fmt.Sprintf("message too big: the most is %d bytes", f.h.maxMessage()))
	}
	if length == 0 {
		out = f.piece(out, nil)
	}
	return used, out
}

// invalid names what is wrong with the header h of a client frame, or "".
func (f *frameEcho) invalid(h []byte) string {
	switch {
	case h[0]&0x70 != 0:
		return "reserved bits set: no extension was agreed"
	case f.op > opBinary && f.op < opClose || f.op > opPong:
		return fmt.Sprintf("unknown opcode %#x", f.op)
	case f.op >= opClose && (!f.fin || f.left > maxControl):
		return "a control frame that is fragmented or longer than 125 bytes"
	case f.op == opContinuation && f.msgOp == 0:
		return "a continuation frame with no message to continue"
	case (f.op == opText || f.op == opBinary) && f.msgOp != 0:
		return "a new message before the last one ended"
	}
	return ""
}

// payload echoes p, the next bytes of the frame's payload, unmasked.
func (f *frameEcho) payload(out, p []byte) []byte {
	if f.op >= opClose {
		return f.control(out, p)
	}
	return f.piece(out, p)
}

// piece echoes p, the next part of a data frame, as a frame of its own:
// the client's frame when p is all of it, otherwise a piece of it.
func (f *frameEcho) piece(out, p []byte) []byte {
	last := int64(len(p)) == f.left
	op := f.op
	if f.cont {
		op = opContinuation
	}
	mark := len(out)
	out = appendHeader(out, last && f.fin, op, len(p))
	start := len(out)
	out = append(out, p...)
	f.unmask(out[start:])
	f.left -= int64(len(p))
	f.msgLen += int64(len(p))
	f.cont = true
	if f.msgOp == opText && !f.text.valid(out[start:]) {
		return f.close(out[:mark], closeInvalidData, errNotUTF8.Error())
	}
	if !last {
		return out
	}
	f.inFrame = false
	if !f.fin {
		return out
	}
	if f.msgOp == opText && !f.text.complete() {
		return f.close(out[:mark], closeInvalidData, errNotUTF8.Error())
	}
	f.h.stats.messages.Add(1)
	f.h.stats.messageBytes.Add(uint64(f.msgLen))
	f.msgOp, f.msgLen = 0, 0
	return out
}

// control gathers p, the next part of a ping, pong or close, and acts once
// it is whole: a ping is answered with a pong of the same payload, a close
// returned, a pong taken as it is.
func (f *frameEcho) control(out, p []byte) []byte {
	var buf [maxControl]byte
	payload := buf[:copy(buf[:], p)]
	f.unmask(payload)
	f.left -= int64(len(p))
	if f.left > 0 || f.ctrl != nil {
		f.ctrl = append(f.ctrl, payload...)
		if f.left > 0 {
			return out // the rest is still to come
		}
		payload, f.ctrl = f.ctrl, nil
	}
	f.inFrame = false
	switch f.op {
	case opPing:
		return append(appendHeader(out, true, opPong, len(payload)), payload...)
	case opPong:
		return out
	}
	switch {
	case len(payload) == 0:
		f.closed = true
		return appendHeader(out, true, opClose, 0)
	case len(payload) == 1:
		return f.close(out, closeProtocolError, "a close frame with a one-byte payload")
	case !validCloseCode(binary.BigEndian.Uint16(payload)):
		return f.close(out, closeProtocolError, fmt.Sprintf("invalid close code %d", binary.BigEndian.Uint16(payload)))
	case !utf8.Valid(payload[2:]):
		return f.close(out, closeInvalidData, "a close reason that is not UTF-8")
	}
	// The client's close, code and reason, goes back as it came.
	f.closed = true
	return append(appendHeader(out, true, opClose, len(payload)), payload...)
}

// unmask unmasks p, the next bytes of the frame's payload, in place: eight
// bytes at a time with the key turned to where p starts, then the rest.
func (f *frameEcho) unmask(p []byte) {
	at := int(f.maskAt)
	f.maskAt = uint8((at + len(p)) & 3)
	var k [8]byte
	for j := range k {
		k[j] = f.mask[(at+j)&3]
	}
	key := binary.LittleEndian.Uint64(k[:])
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^key)
		p = p[8:]
	}
	for j := range p {
		p[j] ^= k[j]
	}
}

// close appends a close frame of code and reason (cut to fit a control
// frame) and ends the echo.
func (f *frameEcho) close(out []byte, code uint16, reason string) []byte {
	f.closed = true
	if len(reason) > maxControl-2 {
		reason = reason[:maxControl-2]
	}
	out = appendHeader(out, true, opClose, 2+len(reason))
	out = binary.BigEndian.AppendUint16(out, code)
	return append(out, reason...)
}

// appendHeader appends the header of a server frame (unmasked) with fin,
// op and a payload of n bytes.
func appendHeader(out []byte, fin bool, op byte, n int) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	switch {
	case n < 126:
		return append(out, b0, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(out, b0, 126), uint16(n))
	}
	return binary.BigEndian.AppendUint64(append(out, b0, 127), uint64(n))
}

// validCloseCode reports whether a client may send code in a close frame
// (RFC 6455 section 7.4: not the reserved 1004, 1005, 1006 and 1015).
func validCloseCode(code uint16) bool {
	switch {
	case code == 1004 || code == 1005 || code == 1006:
		return false
	case code >= 1000 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}
