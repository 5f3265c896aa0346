package web

import "unicode/utf8"

// textCheck checks that a text message arriving in pieces is UTF-8 (RFC
// 6455 section 8.1), holding only the bytes of a character cut in two.
type textCheck struct {
	tail [utf8.UTFMax]byte
	n    int
}

// valid reports whether p, following what came before, may still be part
// of valid UTF-8.
func (c *textCheck) valid(p []byte) bool {
	// First finish the character the last piece cut.
	for c.n > 0 && len(p) > 0 {
		c.tail[c.n] = p[0]
		c.n++
		p = p[1:]
		if utf8.FullRune(c.tail[:c.n]) {
			if r, size := utf8.DecodeRune(c.tail[:c.n]); (r == utf8.RuneError && size == 1) || size != c.n {
				return false
			}
			c.n = 0
		}
	}
	// Keep back a character cut at the end of p.
	end := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if utf8.RuneStart(p[i]) {
			if !utf8.FullRune(p[i:]) {
				end = i
			}
			break
		}
	}
	if !utf8.Valid(p[:end]) {
		return false
	}
	c.n += copy(c.tail[c.n:], p[end:])
	return true
}

// complete reports whether the message ended on a whole character.
func (c *textCheck) complete() bool { return c.n == 0 }
