package pattern

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

func TestStreamIsReproducibleAcrossReadSizes(t *testing.T) {
	whole := make([]byte, 1000)
	NewStream(42).Read(whole)

	// Reading the same stream in odd-sized pieces must give the same bytes.
	s := NewStream(42)
	var pieces []byte
	for _, n := range []int{1, 3, 7, 8, 9, 15, 16, 17, 100, 824} {
		p := make([]byte, n)
		s.Read(p)
		pieces = append(pieces, p...)
	}
	if !bytes.Equal(whole, pieces) {
		t.Fatalf("stream differs when read in pieces at byte %d", FirstDiff(whole, pieces))
	}

	other := make([]byte, 1000)
	NewStream(43).Read(other)
	if bytes.Equal(whole, other) {
		t.Fatal("different seeds gave the same bytes")
	}
}

func TestVerifier(t *testing.T) {
	sent := make([]byte, 100_000)
	NewStream(7).Read(sent)

	tests := []struct {
		name    string
		reply   func() []byte
		wantErr string
	}{
		{name: "exact", reply: func() []byte { return bytes.Clone(sent) }},
		{name: "prefix", reply: func() []byte { return bytes.Clone(sent[:500]) }},
		{
			name: "one byte changed",
			reply: func() []byte {
				r := bytes.Clone(sent)
				r[70000] ^= 0xff
				return r
			},
			wantErr: "byte 70000 differs",
		},
		{
			name:    "zero padding at the start",
			reply:   func() []byte { return append(make([]byte, 4096), sent...) },
			wantErr: "differs",
		},
		{
			name:    "too long",
			reply:   func() []byte { return append(bytes.Clone(sent), 1, 2, 3) },
			wantErr: "3 bytes more than the 100000 sent",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewVerifier(bytes.NewReader(sent))
			reply := tt.reply()
			var err error
			// Feed the reply in uneven pieces, as a socket would deliver it.
			for len(reply) > 0 && err == nil {
				n := min(len(reply), 4093)
				_, err = v.Write(reply[:n])
				reply = reply[n:]
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.wantErr)) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMismatchDetails(t *testing.T) {
	v := NewVerifier(bytes.NewReader([]byte{1, 2, 3}))
	_, err := v.Write([]byte{1, 9})
	var m *Mismatch
	if !errors.As(err, &m) {
		t.Fatalf("error = %v, want a *Mismatch", err)
	}
	if m.Offset != 1 || m.Got != 9 || m.Want != 2 {
		t.Fatalf("mismatch = %+v, want offset 1 got 9 want 2", *m)
	}
	if got := m.Error(); got != "byte 1 differs: got 0x09 want 0x02" {
		t.Fatalf("message = %q", got)
	}
}

func BenchmarkStream(b *testing.B) {
	s := NewStream(1)
	p := make([]byte, 32<<10)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		s.Read(p)
	}
}

func BenchmarkVerifier(b *testing.B) {
	p := make([]byte, 32<<10)
	b.SetBytes(int64(len(p)))
	want := NewStream(1)
	got := NewStream(1)
	v := NewVerifier(want)
	for b.Loop() {
		got.Read(p)
		if _, err := v.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}

// A difference shows with the bytes around it, the same whether the whole
// reply is at hand (Diff) or arrives in pieces of any size (Verifier).
func TestDiffDump(t *testing.T) {
	want := []byte("line one\r\nline two\r\nline three\r\n")
	got := []byte("line one\nline two\nline three\n")
	const base = 1000 // where the reply starts in its stream: 0x3e8
	wantDump := "" +
		"  got  000003e0                           6c 69 6e 65 20 6f 6e 65  |        line one|\n" +
		"       000003f0 [0a]6c 69 6e 65 20 74 77  6f 0a 6c 69 6e 65 20 74  |.line two.line t|\n" +
		"       00000400  68                                                |h               |\n" +
		"  want 000003e0                           6c 69 6e 65 20 6f 6e 65  |        line one|\n" +
		"       000003f0 [0d]0a 6c 69 6e 65 20 74  77 6f 0d 0a 6c 69 6e 65  |..line two..line|\n" +
		"       00000400  20                                                |                |"
	m := Diff(got, want, FirstDiff(got, want), base)
	if m.Offset != 1008 || m.Got != '\n' || m.Want != '\r' {
		t.Fatalf("mismatch = %+v", *m)
	}
	if d := m.Dump(); d != wantDump {
		t.Errorf("Diff dump:\n%s\nwant\n%s", d, wantDump)
	}
	for _, piece := range []int{1, 3, 8, 9, 64} {
		stream := append(make([]byte, base), want...)
		reply := append(make([]byte, base), got...)
		v := NewVerifier(bytes.NewReader(stream))
		var err error
		for off := 0; off < len(reply) && err == nil; off += piece {
			_, err = v.Write(reply[off:min(len(reply), off+piece)])
		}
		var vm *Mismatch
		if !errors.As(err, &vm) {
			t.Fatalf("pieces of %d: error %v, want a *Mismatch", piece, err)
		}
		full := Diff(reply, stream, FirstDiff(reply, stream), 0)
		// The verifier sees the reply only as far as the current write.
		if vm.Offset != full.Offset || vm.Start != full.Start || !bytes.Equal(vm.WantNear, full.WantNear) ||
			len(vm.GotNear) < Near+1 || !bytes.HasPrefix(full.GotNear, vm.GotNear) {
			t.Errorf("pieces of %d: %+v, want %+v", piece, *vm, *full)
		}
	}
	if d := (&Mismatch{Offset: 3, Got: 1, Want: 2}).Dump(); d != "" {
		t.Errorf("dump without context = %q", d)
	}
}

// A text stream is printable ASCII, reproducible, and the same however
// it is read in pieces.
func TestTextStream(t *testing.T) {
	whole := make([]byte, 1000)
	NewTextStream(7).Read(whole)
	if !utf8.Valid(whole) || bytes.ContainsFunc(whole, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		t.Fatalf("not printable: %q", whole)
	}
	s := NewTextStream(7)
	var pieces []byte
	for _, n := range []int{1, 3, 8, 13, 975} {
		p := make([]byte, n)
		s.Read(p)
		pieces = append(pieces, p...)
	}
	if !bytes.Equal(pieces, whole) {
		t.Error("read in pieces, the stream differs")
	}
	other := make([]byte, 1000)
	NewTextStream(8).Read(other)
	if bytes.Equal(other, whole) {
		t.Error("two seeds, one stream")
	}
}
