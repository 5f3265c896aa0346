package pattern

import (
	"fmt"
	"strings"
)

// Near is how many bytes a Mismatch keeps on either side of the first
// byte that differs: enough to recognise a line ending, a header or a
// shifted stream at a glance.
const Near = 16

// Diff returns the Mismatch for a reply got against the bytes want, whose
// first difference is at index d, with up to Near bytes of context on either
// side. base is the position of got[0] and want[0] in the stream.
func Diff(got, want []byte, d int, base int64) *Mismatch {
	from := max(0, d-Near)
	return &Mismatch{
		Offset:   base + int64(d),
		Got:      got[d],
		Want:     want[d],
		Start:    base + int64(from),
		GotNear:  got[from:min(len(got), d+Near+1)],
		WantNear: want[from:min(len(want), d+Near+1)],
	}
}

// Dump shows the bytes around the difference as hexdump -C does, the reply
// ("got") above what was sent ("want"), with the first differing byte in
// brackets. It is empty when the Mismatch holds no context.
func (m *Mismatch) Dump() string {
	if len(m.GotNear) == 0 && len(m.WantNear) == 0 {
		return ""
	}
	var b strings.Builder
	dumpRows(&b, "got ", m.Start, m.GotNear, m.Offset)
	dumpRows(&b, "want", m.Start, m.WantNear, m.Offset)
	return strings.TrimSuffix(b.String(), "\n")
}

// dumpRows writes p, which starts at stream offset start, in rows of 16
// bytes aligned on multiples of 16, with the byte at mark in brackets.
func dumpRows(b *strings.Builder, label string, start int64, p []byte, mark int64) {
	end := start + int64(len(p))
	for row := start &^ 15; row < end || row == start&^15; row += 16 {
		if row != start&^15 {
			label = "    "
		}
		head := fmt.Sprintf("  %s %08x ", label, row)
		// Each byte takes three columns, a space and two hex digits, and
		// a space parts the two groups of eight: so a bracket can take
		// the space on either side of a byte without moving the others.
		hex := []byte(strings.Repeat(" ", 16*3+2))
		text := []byte(strings.Repeat(" ", 16))
		for i := int64(0); i < 16; i++ {
			off := row + i
			if off < start || off >= end {
				continue
			}
			col := i * 3
			if i >= 8 {
				col++
			}
			c := p[off-start]
			copy(hex[col+1:], fmt.Sprintf("%02x", c))
			if off == mark {
				hex[col], hex[col+3] = '[', ']'
			}
			text[i] = '.'
			if c >= 0x20 && c < 0x7f {
				text[i] = c
			}
		}
		fmt.Fprintf(b, "%s%s |%s|\n", head, hex, text)
	}
}
