package check

import (
	"context"
	"fmt"
	"github.com/echod/echod/internal/pattern"
	"net"
	"time"
)

// TCPChecks returns the full TCP suite, in the order Run runs it.
func TCPChecks() []Check {
	return []Check{
		{Name: "smoke", Deadline: 20 * time.Second, Func: checkFiveAtOnce,
			Doc: "5 clients at once, as in the Protohackers Smoke Test; the first stays open while the others send binary data and half-close"},
		{Name: "all-bytes", Deadline: 10 * time.Second, Func: checkAllBytes,
			Doc: "every byte value 0-255 comes back unchanged"},
		{Name: "text", Deadline: 10 * time.Second, Func: checkText,
			Doc: "a short text message with a \\r\\n in it comes back unchanged"},
		{Name: "streaming", Deadline: 20 * time.Second, Func: checkStreaming,
			Doc: "each piece is echoed before the next is sent, without a half-close"},
		{Name: "large", Deadline: 60 * time.Second, Func: checkLarge,
			Doc: "32 MiB written and read at the same time come back verified"},
		{Name: "empty", Deadline: 10 * time.Second, Func: checkEmpty,
			Doc: "a half-close at once gets EOF with nothing before it"},
		{Name: "close-after-eof", Deadline: 20 * time.Second, Func: checkCloseAfterEOF,
			Doc: "after a half-close with data still in flight, the server sends it all back and closes"},
		{Name: "slow-client", Deadline: 20 * time.Second, Func: checkSlowClient,
			Doc: "a client that sends one byte at a time gets every byte back"},
		{Name: "slow-reader", Deadline: 30 * time.Second, Func: checkSlowReader,
			Doc: "a client that half-closes and then reads slowly loses nothing before EOF"},
		{Name: "many-clients", Deadline: 30 * time.Second, Func: checkManyClients,
			Doc: "200 clients connected at once each get their echo"},
		{Name: "resets", Deadline: 20 * time.Second, Func: checkResets,
			Doc: "after clients reset their connections mid-session, a new session still works"},
		{Name: "ipv6", Deadline: 10 * time.Second, Func: checkIPv6, Skip: skipIPv6,
			Doc: "echo over IPv6, when the host has an IPv6 address (a note if only IPv4 answers)"},
	}
}

func allBytes() []byte {
	b := make([]byte, 512)
	for i := range 256 {
		b[i] = byte(i)
		b[511-i] = byte(i)
	}
	return b
}

func checkAllBytes(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp", plan{chunks: [][]byte{allBytes()}}); err != nil {
		return "", err
	}
	return "0x00-0xff up and down, 512 bytes", nil
}

// textMessage has a \r\n inside, as network protocols end their lines, so
// that a server that echoes lines instead of bytes shows it.
const textMessage = "Ground Control to Major Tom:\r\ncommencing countdown, engines on.\n"

func checkText(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp", plan{chunks: [][]byte{[]byte(textMessage)}}); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes of text", len(textMessage)), nil
}

func checkEmpty(ctx context.Context, t *Target) (string, error) {
	if err := t.session(ctx, "tcp", plan{}); err != nil {
		return "", err
	}
	return "EOF and nothing else", nil
}

func checkSlowClient(ctx context.Context, t *Target) (string, error) {
	msg := []byte("one byte at a time, 0123456789\n")
	p := plan{pause: func(int) time.Duration { return 3 * time.Millisecond }}
	for i := range msg {
		p.chunks = append(p.chunks, msg[i:i+1])
	}
	if err := t.session(ctx, "tcp", p); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d bytes in %d writes", len(msg), len(msg)), nil
}

// skipIPv6 skips the ipv6 check unless the target's host is an IPv6
// address or a name with one.
func skipIPv6(t *Target) string {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return err.Error()
	}
	if ip := net.ParseIP(host); ip != nil {
		if ip.To4() != nil {
			return host + " is an IPv4 address"
		}
		return ""
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return fmt.Sprintf("cannot look up %s: %v", host, err)
	}
	for _, ip := range ips {
		if ip.To4() == nil {
			return ""
		}
	}
	return host + " has no IPv6 address"
}

func checkIPv6(ctx context.Context, t *Target) (string, error) {
	c, stop, err := t.dial(ctx, "tcp6")
	if err != nil {
		host, _, _ := net.SplitHostPort(t.Addr)
		if net.ParseIP(host) == nil {
			// A name with IPv4 and IPv6 addresses, such as localhost,
			// where the checks above reached the server over IPv4.
			return "", &noteError{fmt.Sprintf("%s has an IPv6 address but the server does not answer there (%v); IPv4 works, so clients that fall back to IPv4 reach it", host, err)}
		}
		return "", fmt.Errorf("over IPv6: %w", err)
	}
	stop()
	c.Close()
	if err := t.session(ctx, "tcp6", plan{chunks: [][]byte{[]byte(textMessage), allBytes()}}); err != nil {
		return "", fmt.Errorf("over IPv6: %w", err)
	}
	return "text and all byte values over IPv6", nil
}

// size formats n bytes for people.
func size(n int64) string { return pattern.Size(n) }

// count formats n of a noun, in the plural unless n is 1: "1 byte",
// "2 bytes".
func count[N int | int64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
