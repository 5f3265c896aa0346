// Package pattern makes reproducible byte streams and checks echoed bytes
// against what was sent. The send, check and bench tools share it so that
// every one of them reports a corrupted echo the same way.
package pattern

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Stream is an endless, reproducible stream of pseudo-random bytes: two
// Streams with the same seed yield the same bytes, so a sender and a verifier
// can agree on a payload without either of them storing it.
type Stream struct {
	state uint64
	word  [8]byte
	left  int  // unread bytes at the end of word
	text  bool // printable bytes only
}

// NewStream returns a Stream that starts from seed.
func NewStream(seed uint64) *Stream {
	// xorshift never leaves zero, so zero is mapped to a fixed odd constant.
	if seed == 0 {
		seed = 0x9e3779b97f4a7c15
	}
	return &Stream{state: seed}
}

func (s *Stream) next() uint64 {
	// xorshift64*: fast, and plenty random to catch reordered or dropped bytes.
	s.state ^= s.state >> 12
	s.state ^= s.state << 25
	s.state ^= s.state >> 27
	return s.state * 2685821657736338717
}

// NewTextStream returns a Stream like NewStream's whose bytes are all
// printable ASCII (letters, digits, '+' and '/'): the payload of a
// WebSocket text message, which must be UTF-8. Each byte carries six of
// the stream's bits instead of eight.
func NewTextStream(seed uint64) *Stream {
	s := NewStream(seed)
	s.text = true
	return s
}

// textAlphabet is what a text stream's bytes are drawn from.
const textAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// Read fills p with the next len(p) bytes of the stream. It never fails.
func (s *Stream) Read(p []byte) (int, error) {
	n := 0
	for s.left > 0 && n < len(p) {
		p[n] = s.word[8-s.left]
		s.left--
		n++
	}
	for ; len(p)-n >= 8; n += 8 {
		binary.LittleEndian.PutUint64(p[n:], s.next())
	}
	if n < len(p) {
		binary.LittleEndian.PutUint64(s.word[:], s.next())
		s.left = 8
		for n < len(p) {
			p[n] = s.word[8-s.left]
			s.left--
			n++
		}
	}
	if s.text {
		for i, b := range p {
			p[i] = textAlphabet[b&63]
		}
	}
	return n, nil
}

// Mismatch reports the first echoed byte that differs from what was sent.
type Mismatch struct {
	Offset    int64 // position in the stream, from 0
	Got, Want byte
	// GotNear and WantNear, when known, are the reply and the bytes sent
	// from Start, up to Near bytes either side of Offset; Dump shows them.
	Start             int64
	GotNear, WantNear []byte
}

func (m *Mismatch) Error() string {
	return fmt.Sprintf("byte %d differs: got 0x%02x want 0x%02x", m.Offset, m.Got, m.Want)
}

// ErrTooLong is returned by Verifier.Write when the reply goes on past the
// end of what was sent.
var ErrTooLong = errors.New("reply is longer than what was sent")

// Verifier checks a reply, written to it in pieces of any size, against the
// bytes it reads from want.
type Verifier struct {
	want io.Reader
	buf  []byte
	off  int64
	// last holds the last bytes verified (up to Near), the context before
	// a difference that falls at the start of a write.
	last []byte
}

// NewVerifier returns a Verifier that expects the bytes of want, in order.
func NewVerifier(want io.Reader) *Verifier {
	return &Verifier{want: want, buf: make([]byte, 32<<10)}
}

// Write compares p with the next len(p) expected bytes. It returns a
// *Mismatch for the first byte that differs, or ErrTooLong when want ends
// first. After an error the Verifier must not be used again.
func (v *Verifier) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		chunk := min(len(p)-done, len(v.buf))
		n, err := io.ReadFull(v.want, v.buf[:chunk])
		if i := FirstDiff(p[done:done+n], v.buf[:n]); i >= 0 {
			return done + i, v.mismatch(p[done:], n, i)
		}
		v.keep(p[done : done+n])
		v.off += int64(n)
		done += n
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				extra := len(p) - done
				if extra == 1 {
					return done, fmt.Errorf("%w: 1 byte more than the %d sent", ErrTooLong, v.off)
				}
				return done, fmt.Errorf("%w: %d bytes more than the %d sent", ErrTooLong, extra, v.off)
			}
			return done, fmt.Errorf("read expected bytes: %w", err)
		}
	}
	return done, nil
}

// keep remembers the tail of p, just verified, as context.
func (v *Verifier) keep(p []byte) {
	if len(p) >= Near {
		v.last = append(v.last[:0], p[len(p)-Near:]...)
		return
	}
	v.last = append(v.last, p...)
	v.last = v.last[len(v.last)-min(len(v.last), Near):]
}

// mismatch builds the Mismatch for a difference at got[i], where v.buf[:n]
// holds the expected bytes from got[0] on.
func (v *Verifier) mismatch(got []byte, n, i int) *Mismatch {
	// The context before the difference: the verified tail, then the
	// equal bytes of this write.
	before := append(append([]byte(nil), v.last...), got[:i]...)
	before = before[len(before)-min(len(before), Near):]
	want := append(append([]byte(nil), before...), v.buf[i:n]...)
	if len(want) < len(before)+Near+1 {
		// Read a little further, for the context after.
		more := make([]byte, len(before)+Near+1-len(want))
		k, _ := io.ReadFull(v.want, more)
		want = append(want, more[:k]...)
	}
	gotAll := append(append([]byte(nil), before...), got[i:min(len(got), i+Near+1)]...)
	return Diff(gotAll, want, len(before), v.off+int64(i-len(before)))
}

// Verified returns how many bytes have matched so far.
func (v *Verifier) Verified() int64 { return v.off }

// FirstDiff returns the index of the first byte where a and b differ, or -1
// if they are equal over the length of the shorter one.
func FirstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	if bytes.Equal(a[:n], b[:n]) {
		return -1
	}
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// Size formats n bytes for people, as the tools' reasons give sizes:
// "512 bytes", "64 KiB", "1.5 MiB", "32 MiB".
func Size(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 10<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
