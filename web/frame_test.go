package web

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/echod/echod/echo"
)

// clientFrame returns a client frame: masked with a key made from seed.
func clientFrame(fin bool, op byte, payload []byte, seed uint32) []byte {
	var b []byte
	b0 := op
	if fin {
		b0 |= 0x80
	}
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, b0, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, b0, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, b0, 0x80|127), uint64(n))
	}
	key := binary.BigEndian.AppendUint32(nil, seed*2654435761+1)
	b = append(b, key...)
	for i, c := range payload {
		b = append(b, c^key[i%4])
	}
	return b
}

// serverFrame is a frame the echo wrote.
type serverFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// parseServer splits out into the server's frames, failing t on anything
// a server may not send: a mask, reserved bits, a cut frame.
func parseServer(t *testing.T, out []byte) []serverFrame {
	t.Helper()
	var fs []serverFrame
	for len(out) > 0 {
		if len(out) < 2 {
			t.Fatalf("a cut frame header: % x", out)
		}
		if out[0]&0x70 != 0 || out[1]&0x80 != 0 {
			t.Fatalf("reserved bits or a mask in a server frame: % x", out[:2])
		}
		f := serverFrame{fin: out[0]&0x80 != 0, op: out[0] & 0x0f}
		n, hl := int(out[1]&0x7f), 2
		switch n {
		case 126:
			n, hl = int(binary.BigEndian.Uint16(out[2:])), 4
		case 127:
			n, hl = int(binary.BigEndian.Uint64(out[2:])), 10
		}
		if len(out) < hl+n {
			t.Fatalf("a frame of %d bytes cut at %d", n, len(out)-hl)
		}
		f.payload = out[hl : hl+n]
		out = out[hl+n:]
		fs = append(fs, f)
	}
	return fs
}

// message is a message as a client reassembles it, or a control frame.
type message struct {
	op      byte
	payload string
}

// messages reassembles frames into messages and control frames, failing t
// on fragments out of order.
func messages(t *testing.T, fs []serverFrame) []message {
	t.Helper()
	var ms []message
	var cur *message
	for _, f := range fs {
		switch {
		case f.op == opClose:
			// What a message left unfinished is lost with the connection.
			return append(ms, message{f.op, string(f.payload)})
		case f.op > opClose:
			ms = append(ms, message{f.op, string(f.payload)})
			continue
		case f.op == opContinuation && cur == nil, f.op != opContinuation && cur != nil:
			t.Fatalf("fragments out of order at opcode %#x", f.op)
		case cur == nil:
			cur = &message{op: f.op}
		}
		cur.payload += string(f.payload)
		if f.fin {
			ms = append(ms, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("a message left unfinished: %d bytes of opcode %#x", len(cur.payload), cur.op)
	}
	return ms
}

// feed runs in through a new frame echo, cut at the given lengths (the
// rest in one piece), and returns what it wrote and whether it ended.
func feed(h *Handler, in []byte, cuts ...int) ([]byte, bool) {
	f := newFrameEcho(h)
	var out []byte
	end := false
	for _, c := range cuts {
		c = min(c, len(in))
		out, end = f.Process(out, in[:c])
		in = in[c:]
		if end {
			return out, true
		}
	}
	if len(in) > 0 {
		out, end = f.Process(out, in)
	}
	return out, end
}

func closeOf(t *testing.T, m message) (uint16, string) {
	t.Helper()
	if m.op != opClose || len(m.payload) < 2 {
		t.Fatalf("want a close frame with a code, got opcode %#x payload %q", m.op, m.payload)
	}
	return binary.BigEndian.Uint16([]byte(m.payload)), m.payload[2:]
}

func TestFrameEchoKeepsFramesThatArriveWhole(t *testing.T) {
	in := slices.Concat(
		clientFrame(true, opText, []byte("hello"), 1),
		clientFrame(false, opBinary, []byte{0, 1, 2}, 2),
		clientFrame(true, opPing, []byte("are you there"), 3), // between fragments, as RFC 6455 allows
		clientFrame(false, opContinuation, bytes.Repeat([]byte{0xff}, 300), 4),
		clientFrame(true, opContinuation, nil, 5),
		clientFrame(true, opPong, []byte("unasked"), 6),
		clientFrame(true, opBinary, bytes.Repeat([]byte{7}, 70000), 7),
	)
	h := &Handler{}
	out, end := feed(h, in)
	if end {
		t.Fatal("the echo ended without a close")
	}
	got := parseServer(t, out)
	want := []serverFrame{
		{true, opText, []byte("hello")},
		{false, opBinary, []byte{0, 1, 2}},
		{true, opPong, []byte("are you there")},
		{false, opContinuation, bytes.Repeat([]byte{0xff}, 300)},
		{true, opContinuation, []byte{}},
		{true, opBinary, bytes.Repeat([]byte{7}, 70000)},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].fin != want[i].fin || got[i].op != want[i].op || !bytes.Equal(got[i].payload, want[i].payload) {
			t.Errorf("frame %d: got fin=%v op=%#x %d bytes, want fin=%v op=%#x %d bytes",
				i, got[i].fin, got[i].op, len(got[i].payload), want[i].fin, want[i].op, len(want[i].payload))
		}
	}
	if s := h.Stats(); s.Messages != 3 || s.MessageBytes != 5+303+70000 {
		t.Errorf("counted %d messages of %d bytes, want 3 of %d", s.Messages, s.MessageBytes, 5+303+70000)
	}
}

// TestFrameEchoAnyCut cuts the same conversation at every place and at
// random places: the client reassembles the same messages every time.
func TestFrameEchoAnyCut(t *testing.T) {
	text := []byte("héllo wörld, ünïcode cut in two: 日本語")
	in := slices.Concat(
		clientFrame(true, opText, text, 1),
		clientFrame(false, opText, text[:3], 2), // "h" and half of "é"
		clientFrame(true, opContinuation, text[3:], 3),
		clientFrame(true, opPing, []byte("p"), 4),
		clientFrame(true, opBinary, bytes.Repeat([]byte{1, 2, 3}, 100), 5),
		clientFrame(true, opClose, binary.BigEndian.AppendUint16(nil, 1000), 6),
	)
	want := []message{
		{opText, string(text)}, {opText, string(text)}, {opPong, "p"},
		{opBinary, string(bytes.Repeat([]byte{1, 2, 3}, 100))}, {opClose, "\x03\xe8"},
	}
	check := func(t *testing.T, cuts []int) {
		t.Helper()
		out, end := feed(&Handler{}, in, cuts...)
		if !end {
			t.Fatalf("cuts %v: the echo did not end after the client's close", cuts)
		}
		got := messages(t, parseServer(t, out))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("cuts %v:\ngot  %q\nwant %q", cuts, got, want)
		}
	}
	for i := range len(in) {
		check(t, []int{i})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var cuts []int
		for range 1 + r.IntN(20) {
			cuts = append(cuts, r.IntN(40))
		}
		check(t, cuts)
	}
	// One byte at a time.
	check(t, slices.Repeat([]int{1}, len(in)))
}

func TestFrameEchoCloses(t *testing.T) {
	tooLong := (&Handler{}).maxMessage() + 1
	bigHeader := binary.BigEndian.AppendUint64([]byte{0x82, 0x80 | 127}, uint64(tooLong))
	for _, tc := range []struct {
		name   string
		in     []byte
		code   uint16
		echoed int // messages echoed before the close
	}{
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, closeProtocolError, 0},
		{"reserved bits", append([]byte{0xc1}, clientFrame(true, opText, []byte("x"), 1)[1:]...), closeProtocolError, 0},
		{"unknown opcode", clientFrame(true, 0x3, nil, 1), closeProtocolError, 0},
		{"fragmented ping", clientFrame(false, opPing, nil, 1), closeProtocolError, 0},
		{"long ping", clientFrame(true, opPing, make([]byte, 126), 1), closeProtocolError, 0},
		{"continuation first", clientFrame(true, opContinuation, []byte("x"), 1), closeProtocolError, 0},
		{"text inside binary", slices.Concat(clientFrame(false, opBinary, []byte("a"), 1), clientFrame(true, opText, []byte("b"), 2)), closeProtocolError, 0},
		{"invalid UTF-8", slices.Concat(clientFrame(true, opText, []byte("ok"), 1), clientFrame(true, opText, []byte{'a', 0xff}, 2)), closeInvalidData, 1},
		{"UTF-8 cut at the end", clientFrame(true, opText, []byte("\xe6\x97"), 1), closeInvalidData, 0},
		{"too big", append(bigHeader, 1, 2, 3, 4), closeTooBig, 0},
		// A length that would overflow the message's count past zero.
		{"too big after a fragment", slices.Concat(clientFrame(false, opBinary, []byte("x"), 1),
			binary.BigEndian.AppendUint64([]byte{0x00, 0x80 | 127}, 1<<63-1), []byte{1, 2, 3, 4}), closeTooBig, 0},
		{"close code 1005", clientFrame(true, opClose, binary.BigEndian.AppendUint16(nil, 1005), 1), closeProtocolError, 0},
		{"close code 999", clientFrame(true, opClose, binary.BigEndian.AppendUint16(nil, 999), 1), closeProtocolError, 0},
		{"one-byte close", clientFrame(true, opClose, []byte{3}, 1), closeProtocolError, 0},
		{"close reason not UTF-8", clientFrame(true, opClose, append(binary.BigEndian.AppendUint16(nil, 1000), 0xc3, 0x28), 1), closeInvalidData, 0},
		{"client's close", clientFrame(true, opClose, append(binary.BigEndian.AppendUint16(nil, 4000), "bye"...), 1), 4000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{}
			out, end := feed(h, append(tc.in, clientFrame(true, opText, []byte("after"), 9)...))
			if !end {
				t.Fatal("the echo did not end")
			}
			ms := messages(t, parseServer(t, out))
			if len(ms) != tc.echoed+1 {
				t.Fatalf("got %q, want %d echoes and a close", ms, tc.echoed)
			}
			if code, _ := closeOf(t, ms[len(ms)-1]); code != tc.code {
				t.Errorf("closed with %d, want %d", code, tc.code)
			}
		})
	}
}

// An unmasked frame is refused from its first two bytes: without a mask
// key its header's length is unknown, and the client may send no more.
func TestFrameEchoRefusesAnUnmaskedFrameAtOnce(t *testing.T) {
	out, end := feed(&Handler{}, []byte{0x81, 0x02})
	ms := messages(t, parseServer(t, out))
	if !end || len(ms) != 1 {
		t.Fatalf("got %q (end %v), want a close at once", ms, end)
	}
	if code, _ := closeOf(t, ms[0]); code != closeProtocolError {
		t.Errorf("closed with %d, want %d", code, closeProtocolError)
	}
}

func TestFrameEchoStop(t *testing.T) {
	for _, tc := range []struct {
		why  echo.Reason
		code uint16
	}{
		{echo.ReasonIdleTimeout, closeGoingAway},
		{echo.ReasonShutdown, closeGoingAway},
		{echo.ReasonMaxSessionDuration, closePolicyViolation},
		{echo.ReasonMaxSessionBytes, closePolicyViolation},
	} {
		f := newFrameEcho(&Handler{})
		// Half a frame has come: the piece echoed is a frame of its own,
		// so the close can follow it.
		msg := clientFrame(true, opBinary, []byte("0123456789"), 1)
		out, _ := f.Process(nil, msg[:10])
		out = f.Stop(out, tc.why)
		ms := parseServer(t, out)
		if code, reason := closeOf(t, message{ms[len(ms)-1].op, string(ms[len(ms)-1].payload)}); code != tc.code {
			t.Errorf("%v: closed with %d (%s), want %d", tc.why, code, reason, tc.code)
		}
		if again := f.Stop(nil, tc.why); len(again) != 0 {
			t.Errorf("%v: a second Stop wrote %d bytes", tc.why, len(again))
		}
	}
}

func TestFrameEchoQuiet(t *testing.T) {
	f := newFrameEcho(&Handler{})
	if f.Process(nil, clientFrame(true, opPing, []byte("x"), 1)); !f.Quiet() {
		t.Error("a ping counted as activity")
	}
	if f.Process(nil, clientFrame(true, opBinary, []byte("x"), 1)); f.Quiet() {
		t.Error("a message counted as a keep-alive")
	}
}

// Busy is what makes a drain wait: true from a message's first header to
// its last byte, whether the message is cut into frames or a frame by the
// network.
func TestFrameEchoBusy(t *testing.T) {
	f := newFrameEcho(&Handler{})
	whole := clientFrame(true, opBinary, []byte("0123456789"), 1)
	for _, step := range []struct {
		in   []byte
		busy bool
	}{
		{whole[:8], true}, // the header and two bytes
		{whole[8:], false},
		{clientFrame(false, opText, []byte("a"), 2), true},
		{clientFrame(true, opPing, nil, 3), true},
		{clientFrame(true, opContinuation, []byte("b"), 4), false},
	} {
		f.Process(nil, step.in)
		if f.Busy() != step.busy {
			t.Fatalf("after % x: Busy = %v, want %v", step.in, f.Busy(), step.busy)
		}
	}
}

// FuzzFrameEcho feeds arbitrary bytes, cut anywhere: the echo never panics
// and writes only whole, unmasked frames.
func FuzzFrameEcho(f *testing.F) {
	f.Add(clientFrame(true, opText, []byte("hi"), 1), uint8(1))
	f.Add(clientFrame(false, opBinary, []byte("hi"), 1), uint8(3))
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		out, _ := feed(&Handler{MaxMessage: 1 << 10}, in, slices.Repeat([]int{int(cut) + 1}, len(in))...)
		parseServer(t, out)
	})
}

// BenchmarkFrameEcho is the frame echo's cost per message, arriving whole:
// a header to read and write, and the payload unmasked.
func BenchmarkFrameEcho(b *testing.B) {
	for _, size := range []int{64, 512, 32 << 10} {
		for _, op := range []byte{opBinary, opText} {
			b.Run(fmt.Sprintf("%s/%d", map[byte]string{opBinary: "binary", opText: "text"}[op], size), func(b *testing.B) {
				in := clientFrame(true, op, bytes.Repeat([]byte("a"), size), 1)
				f := newFrameEcho(&Handler{})
				out := make([]byte, 0, len(in))
				b.SetBytes(int64(size))
				for b.Loop() {
					out, _ = f.Process(out[:0], in)
				}
			})
		}
	}
}
