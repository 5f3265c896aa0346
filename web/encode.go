package web

import (
	"encoding/base64"
	"io"
	"slices"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// The request echo's JSON is written straight to the response, exactly as
// json.MarshalIndent(e, "", "  ") would write it, but without building it
// in memory first: a byte of body can take six bytes of JSON (\u0001), and
// json.MarshalIndent holds the JSON twice over, so a 1 MiB body took
// 12 MiB or more. A first pass counts the bytes, for Content-Length.

// jsonWriter is where the echo goes: the response, or a count of bytes.
type jsonWriter interface {
	io.Writer
	io.StringWriter
}

// counter counts what it is given.
type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

func (c *counter) WriteString(s string) (int, error) {
	c.n += int64(len(s))
	return len(s), nil
}

// encoder writes e as JSON to w, with body in place of e.Body: as text or
// in base64, as e.BodyEncoding says. It gathers small pieces (an escape is
// one) in buf, so that w sees few writes. Write errors are kept in err
// and end the writing.
type encoder struct {
	w   jsonWriter
	buf []byte
	err error
}

// encoderBuffer is the most an encoder's buffer holds; a piece as long as
// half of it goes to w directly.
const encoderBuffer = 8 << 10

func (en *encoder) raw(s string) {
	if en.err != nil || s == "" {
		return
	}
	if len(en.buf)+len(s) > cap(en.buf) {
		en.flush()
	}
	if len(s) >= cap(en.buf)/2 {
		if en.err == nil {
			_, en.err = en.w.WriteString(s)
		}
		return
	}
	en.buf = append(en.buf, s...)
}

// Write lets the base64 encoder write through en.
func (en *encoder) Write(p []byte) (int, error) {
	en.raw(unsafe.String(unsafe.SliceData(p), len(p)))
	return len(p), en.err
}

func (en *encoder) flush() {
	if en.err == nil && len(en.buf) > 0 {
		_, en.err = en.w.Write(en.buf)
	}
	en.buf = en.buf[:0]
}

// jsonSize is the length of the JSON of e with body.
func jsonSize(e *Request, body []byte) int64 {
	var c counter
	writeJSON(&c, e, body, 0)
	return c.n
}

// writeJSON writes the echo e, its body body, as json.MarshalIndent would,
// and a newline. size is its length, from jsonSize, for the buffer; 0
// writes through, as for counting.
func writeJSON(w jsonWriter, e *Request, body []byte, size int64) error {
	en := &encoder{w: w}
	if size > 0 {
		en.buf = make([]byte, 0, min(size, encoderBuffer))
	}
	en.raw("{\n")
	en.field("method", 1)
	en.str(e.Method)
	en.next("path")
	en.str(e.Path)
	en.next("uri")
	en.str(e.URI)
	en.next("query")
	en.stringsMap(e.Query, 1)
	en.next("protocol")
	en.str(e.Protocol)
	en.next("host")
	en.str(e.Host)
	en.next("headers")
	en.stringsMap(e.Headers, 1)
	en.next("body")
	if e.BodyEncoding == "base64" {
		en.raw(`"`)
		b64 := base64.NewEncoder(base64.StdEncoding, en)
		b64.Write(body) // errors stay in en.err
		b64.Close()
		en.raw(`"`)
	} else {
		en.strBytes(body)
	}
	en.next("body_encoding")
	en.str(e.BodyEncoding)
	en.next("body_bytes")
	en.raw(strconv.Itoa(e.BodyBytes))
	en.next("body_truncated")
	en.raw(strconv.FormatBool(e.BodyTruncated))
	if e.BodyCut != "" {
		en.next("body_cut")
		en.str(e.BodyCut)
	}
	en.next("client")
	en.str(e.Client)
	if len(e.XForwardedFor) > 0 {
		en.next("x_forwarded_for")
		en.strings(e.XForwardedFor, 1)
	}
	if len(e.Forwarded) > 0 {
		en.next("forwarded")
		en.strings(e.Forwarded, 1)
	}
	en.next("tls")
	if t := e.TLS; t == nil {
		en.raw("null")
	} else {
		en.raw("{\n")
		en.field("version", 2)
		en.str(t.Version)
		en.raw(",\n")
		en.field("cipher", 2)
		en.str(t.Cipher)
		for _, f := range [...]struct{ name, v string }{{"alpn", t.ALPN}, {"sni", t.SNI}, {"client_cert_subject", t.ClientCertSubject}} {
			if f.v != "" {
				en.raw(",\n")
				en.field(f.name, 2)
				en.str(f.v)
			}
		}
		en.raw("\n  }")
	}
	en.next("hostname")
	en.str(e.Hostname)
	en.raw("\n}\n")
	en.flush()
	return en.err
}

// next ends a field of the top object and starts the next.
func (en *encoder) next(name string) {
	en.raw(",\n")
	en.field(name, 1)
}

// field writes the name of a field at depth, and its colon.
func (en *encoder) field(name string, depth int) {
	en.indent(depth)
	en.str(name)
	en.raw(": ")
}

const indents = "\n                "

// indent writes depth levels of two spaces (no newline).
func (en *encoder) indent(depth int) {
	en.raw(indents[1 : 1+2*depth])
}

// stringsMap writes m, its keys sorted, whose value is at depth.
func (en *encoder) stringsMap(m map[string][]string, depth int) {
	if m == nil {
		en.raw("null")
		return
	}
	if len(m) == 0 {
		en.raw("{}")
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	en.raw("{\n")
	for i, k := range keys {
		if i > 0 {
			en.raw(",\n")
		}
		en.field(k, depth+1)
		en.strings(m[k], depth+1)
	}
	en.raw("\n")
	en.indent(depth)
	en.raw("}")
}

// strings writes a list of strings whose value is at depth.
func (en *encoder) strings(list []string, depth int) {
	if list == nil {
		en.raw("null")
		return
	}
	if len(list) == 0 {
		en.raw("[]")
		return
	}
	en.raw("[\n")
	for i, s := range list {
		if i > 0 {
			en.raw(",\n")
		}
		en.indent(depth + 1)
		en.str(s)
	}
	en.raw("\n")
	en.indent(depth)
	en.raw("]")
}

func (en *encoder) str(s string) { writeString(en, s) }

// strBytes writes p as a JSON string. p is read as a string in place, not
// copied: it may be a whole body, and it does not change while written.
func (en *encoder) strBytes(p []byte) { writeString(en, unsafe.String(unsafe.SliceData(p), len(p))) }

const hex = "0123456789abcdef"

// writeString writes s as a JSON string the way encoding/json does: HTML's
// <, > and & escaped, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
// Runs that need no escape are written whole.
func writeString(en *encoder, s string) {
	en.raw(`"`)
	start := 0
	for i := 0; i < len(s) && en.err == nil; {
		b := s[i]
		if b < utf8.RuneSelf {
			if safe(b) {
				i++
				continue
			}
			en.raw(s[start:i])
			switch b {
			case '\\', '"':
				en.raw(`\` + string(rune(b)))
			case '\b':
				en.raw(`\b`)
			case '\f':
				en.raw(`\f`)
			case '\n':
				en.raw(`\n`)
			case '\r':
				en.raw(`\r`)
			case '\t':
				en.raw(`\t`)
			default:
				en.raw(`\u00`)
				en.raw(hex[b>>4 : b>>4+1])
				en.raw(hex[b&0xf : b&0xf+1])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			en.raw(s[start:i])
			en.raw(`\ufffd`)
		case r == '\u2028' || r == '\u2029':
			en.raw(s[start:i])
			en.raw(`\u202`)
			en.raw(hex[r&0xf : r&0xf+1])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	en.raw(s[start:])
	en.raw(`"`)
}

// safe reports whether encoding/json writes the ASCII byte b as it is.
func safe(b byte) bool {
	return b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
}
