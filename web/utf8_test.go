package web

import (
	"testing"
	"unicode/utf8"
)

// Any text, cut anywhere into two or three pieces, is judged as
// utf8.Valid judges it whole.
func TestTextCheckAgreesWithValidWherever(t *testing.T) {
	for _, s := range []string{
		"", "plain", "ünïcödé ✓ 🚀", "\xff", "a\xc3", "\xc3\x28", "\xe2\x82", "\xed\xa0\x80",
		"\xf0\x9f\x9a", "\xf0\x9f\x9a\x80", "\xef\xbf\xbd", "🚀\x80", "\xf4\x90\x80\x80",
	} {
		b := []byte(s)
		for i := 0; i <= len(b); i++ {
			for j := i; j <= len(b); j++ {
				var c textCheck
				got := c.valid(b[:i]) && c.valid(b[i:j]) && c.valid(b[j:]) && c.complete()
				if got != utf8.Valid(b) {
					t.Errorf("%q cut at %d and %d: valid = %v, want %v", s, i, j, got, !got)
				}
			}
		}
	}
}

func FuzzTextCheck(f *testing.F) {
	f.Add([]byte("ünïcödé ✓"), 3)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if cut < 0 || cut > len(b) {
			return
		}
		var c textCheck
		if got := c.valid(b[:cut]) && c.valid(b[cut:]) && c.complete(); got != utf8.Valid(b) {
			t.Errorf("%q cut at %d: valid = %v", b, cut, got)
		}
	})
}
