package check

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// The diagnoses in this file recognise the shape of a wrong reply as a
// whole, so that a failure names the bug (a line-based server, a web
// server) instead of a byte offset.

// errDecisive marks a failure that every later TCP check would repeat,
// such as a server that speaks another protocol: the run says it once and
// skips those checks.
var errDecisive = errors.New("every check would fail the same way")

// decisiveError is a failure that every later TCP check would repeat.
type decisiveError struct{ msg string }

func (e *decisiveError) Error() string { return e.msg }
func (e *decisiveError) Is(target error) bool {
	return target == errDecisive
}

// protocolError is a reply in another protocol than echo.
type protocolError = decisiveError

// errNeverCloses is a complete echo that the server never follows with its
// close.
func errNeverCloses(patience time.Duration) error {
	return &decisiveError{fmt.Sprintf("no EOF %v after half-close: the server did not close the connection", patience)}
}

// streamShape recognises, from the bytes around the first difference, a
// verified stream whose line endings the server changed.
func streamShape(m *pattern.Mismatch) error {
	i := int(m.Offset - m.Start)
	if m.Got == '\n' && m.Want == '\r' && i+1 < len(m.WantNear) && m.WantNear[i+1] == '\n' {
		return fmt.Errorf(`byte %d: the server turned \r\n into \n (bufio.Scanner's lines drop the \r: echo the bytes, not the lines)`, m.Offset)
	}
	return nil
}

// errHTTP is what a web server answers with.
var errHTTP = &protocolError{"answered with HTTP: this looks like a web server, not an echo server"}

// errTLS says that the server at addr speaks TLS.
func errTLS(addr string) error {
	return &protocolError{"answered with TLS: this looks like a TLS server; check it with tls://" + addr}
}

// shape recognises a reply that is not what was sent but is a well-known
// transformation of it, or another protocol's answer. It returns nil when
// it sees none.
func shape(sent, got []byte) error {
	switch {
	case len(got) == 0:
		return nil
	case bytes.HasPrefix(got, []byte("HTTP/1.")) && !bytes.HasPrefix(sent, []byte("HTTP/1.")):
		return errHTTP
	case isTLSRecord(got) && !isTLSRecord(sent):
		return errTLS("HOST:PORT")
	case bytes.Equal(got, append(bytes.Clone(sent), '\n')):
		return errors.New("reply is what was sent plus a newline: the server added a newline (an echo sends back exactly the bytes it read)")
	case bytes.Contains(sent, []byte("\r\n")) && bytes.Equal(got, bytes.ReplaceAll(sent, []byte("\r\n"), []byte("\n"))):
		return errors.New(`the server turned \r\n into \n (bufio.Scanner's lines drop the \r: echo the bytes, not the lines)`)
	case bytes.Contains(sent, []byte("\r\n")) && bytes.Equal(got, append(bytes.ReplaceAll(sent, []byte("\r\n"), []byte("\n")), '\n')):
		return errors.New(`the server turned \r\n into \n and added a newline at the end (bufio.Scanner's lines drop the \r: echo the bytes, not the lines)`)
	case bytes.Contains(sent, []byte("\n")) && bytes.Equal(got, dropLineEnds(sent)):
		return errors.New("the server dropped the newlines (bufio.Scanner's lines do not include them: echo the bytes, not the lines)")
	}
	return nil
}

// isTLSRecord reports whether b starts like a TLS record: a handshake or an
// alert, in TLS 1.0 to 1.3's record version.
func isTLSRecord(b []byte) bool {
	return len(b) >= 3 && (b[0] == 0x15 || b[0] == 0x16) && b[1] == 0x03 && b[2] <= 0x04
}

// errClosedEmpty marks a session the server ended, by a close or a reset,
// without sending a byte back: what a TLS server does with plain text.
var errClosedEmpty = errors.New("closed without a reply")

// noteError is a finding that does not fail the server.
type noteError struct{ msg string }

func (e *noteError) Error() string { return e.msg }

// silent wraps err so that it can be found with errors.Is but adds nothing
// to the message: a mark, not a reason.
func silent(err error) error { return silentError{err} }

type silentError struct{ err error }

func (silentError) Error() string   { return "" }
func (e silentError) Unwrap() error { return e.err }

// dropLineEnds returns b without its line endings, \r\n or \n.
func dropLineEnds(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\n"), nil)
}
