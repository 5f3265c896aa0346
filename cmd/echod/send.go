package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/echod/echod/check"
	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/target"
)

// sendOptions are send's flags, for every transport.
type sendOptions struct {
	timeout  time.Duration
	patience time.Duration
	verify   bool
	tls      *tlsFlags
	typing   bool        // standard input is a person at a terminal
	tlsCfg   *tls.Config // for tls:// and wss://
}

func runSend(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("send", "echod send [flags] ADDRESS [MESSAGE...]", std.out)
	addr := fs.String("addr", "", "deprecated: give the address as the first argument instead")
	var o sendOptions
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "give up after this long with no input and no reply; time spent waiting for you to type does not count (udp://, ws://: the whole exchange; 0: never)")
	fs.DurationVar(&o.patience, "patience", check.DefaultPatience, "after the half-close, how long to wait for more of the echo or for the server's close")
	fs.BoolVar(&o.verify, "verify", false, "exit 1 unless the reply is exactly what was sent")
	o.tls = addTLSFlags(fs)
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(std.out, "\nADDRESS is HOST:PORT, HOST PORT, tcp://HOST:PORT, udp://HOST:PORT (the message\nor standard input in one datagram), tls://HOST:PORT, or ws://HOST:PORT/PATH or\nwss://HOST:PORT/PATH (in one WebSocket message: text if it is UTF-8, else binary).\nWithout MESSAGE, send sends standard input. Words that start with - go after --:\nechod send HOST:PORT -- -n.\n")
	}
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	var tgt target.Target
	var message []string
	if *addr != "" {
		// The old form, echod send -addr HOST:PORT MESSAGE: every
		// argument is the message.
		if tgt, err = target.Parse(*addr); err != nil {
			return usagef("send", "invalid -addr %q: %v", *addr, err)
		}
		message = positional
	} else {
		t, used, err := target.FromArgs(positional)
		if err != nil {
			return &usageError{cmd: "send", err: err}
		}
		tgt, message = t, positional[used:]
	}
	switch {
	case o.timeout < 0:
		return usagef("send", "-timeout must not be negative, got %v", o.timeout)
	case o.patience <= 0:
		return usagef("send", "-patience must be positive, got %v", o.patience)
	}
	if o.tlsCfg, err = o.tls.config("send", tgt); err != nil {
		return err
	}
	var src io.Reader = std.in
	if len(message) > 0 {
		src = strings.NewReader(strings.Join(message, " "))
	} else if std.inTTY {
		fmt.Fprintln(std.err, "echod send: reading what you type; each line comes back as you send it; press Ctrl-D to end (Ctrl-Z, Enter on Windows)")
		o.typing = true
	}

	// A stream's -timeout is a silence: the exchange measures it itself.
	streamed := tgt.Transport == target.TCP || tgt.Transport == target.TLS
	if o.timeout > 0 && !streamed {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	switch tgt.Transport {
	case target.WS, target.WSS:
		return sendWebSocket(ctx, tgt, src, o, std)
	case target.UDP:
		err = sendDatagram(ctx, tgt, src, o, std.out)
	default:
		err = sendStream(ctx, tgt, src, o, std)
	}
	if err != nil && interrupted(ctx) {
		return fmt.Errorf("%w: send to %s stopped", errInterrupted, tgt)
	}
	return err
}

// streamConn is a TCP or TLS connection: both can half-close.
type streamConn interface {
	net.Conn
	CloseWrite() error
}

func sendStream(ctx context.Context, tgt target.Target, src io.Reader, o sendOptions, std stdio) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", tgt.Addr())
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			if target.AnswersUDP(ctx, tgt.Addr()) {
				return fmt.Errorf("nothing is listening on %s over TCP, but UDP echo answers there: send to udp://%s", tgt.Addr(), tgt.Addr())
			}
			return fmt.Errorf("nothing is listening on %s", tgt.Addr())
		}
		return fmt.Errorf("connect to %s: %w", tgt.Addr(), err)
	}
	defer conn.Close()
	// An expired or cancelled ctx unblocks both directions at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var c streamConn = conn.(*net.TCPConn)
	if tgt.Transport == target.TLS {
		o.tls.note(std.err, tgt, o.tlsCfg)
		tc, err := target.Handshake(ctx, conn, o.tlsCfg)
		if errors.Is(err, target.ErrEchoedHandshake) {
			return fmt.Errorf("%s: %w; send to %s, without tls://", tgt, err, tgt.Addr())
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tgt, err)
		}
		c = tc
	}

	x := exchange{ctx: ctx, tgt: tgt, conn: c, verify: o.verify, patience: o.patience}
	if o.timeout > 0 {
		x.silence = newSilence(o.timeout, o.typing, func() { c.SetDeadline(time.Unix(1, 0)) })
		defer x.silence.stop()
		src = x.silence.reader(src)
	}
	err = x.run(src, std.out)
	var stall *stallError
	switch {
	case errors.As(err, &stall):
		return stall.explain(tgt, o.patience)
	case err != nil && x.silence.expired():
		return x.silenceError(tgt, o.timeout)
	case err != nil && errors.Is(err, os.ErrDeadlineExceeded):
		return ctx.Err()
	case err != nil:
		return err
	}
	// A clean close: but was it an echo?
	switch {
	case bytes.HasPrefix(x.replyHead, []byte("HTTP/1.")) && !bytes.HasPrefix(x.sentHead, []byte("HTTP/1.")):
		return fmt.Errorf("%s answered with HTTP: this looks like a web server, not an echo server", tgt)
	case x.received.Load() == 0 && x.sent.Load() > 0:
		if tgt.Transport == target.TCP {
			pctx, cancel := context.WithTimeout(ctx, o.patience)
			defer cancel()
			if target.SpeaksTLS(pctx, tgt.Addr()) {
				return fmt.Errorf("%s closed the connection without a reply, and answers TLS: this looks like a TLS server; send to tls://%s", tgt, tgt.Addr())
			}
		}
		if x.closedAtHalfClose {
			return fmt.Errorf("%s closed the connection at the half-close, without a reply to the %s sent: %s", tgt, plural(int(x.sent.Load()), "byte"), closedAtHalfClose(tgt))
		}
		return fmt.Errorf("%s closed the connection without a reply to the %s sent", tgt, plural(int(x.sent.Load()), "byte"))
	case x.received.Load() < x.sent.Load() && x.closedAtHalfClose:
		return fmt.Errorf("%s closed the connection at the half-close, after %d of %s came back: %s", tgt, x.received.Load(), plural(int(x.sent.Load()), "byte"), closedAtHalfClose(tgt))
	}
	// A person reading a terminal gets their prompt back on a line of its own.
	if std.outTTY && x.received.Load() > 0 && x.last != '\n' {
		fmt.Fprintln(std.out)
	}
	return nil
}

// closedAtHalfClose names the two causes of an echo cut short by a close
// after the half-close, and how to tell them apart.
func closedAtHalfClose(tgt target.Target) string {
	return "the server closes at EOF before writing back all it read, or something between (a proxy or tunnel) turns the half-close into a close; to tell, run echod check on the server's own machine, or echod path " + tgt.String()
}

// silenceError explains an exchange that went silent for the timeout.
func (x *exchange) silenceError(tgt target.Target, timeout time.Duration) error {
	sent, got := x.sent.Load(), x.received.Load()
	if sent == 0 {
		return fmt.Errorf("no input for %v (-timeout): send sends its standard input, or the MESSAGE after the address", timeout)
	}
	if got >= sent {
		// Everything came back: what is missing is the end of the input.
		return fmt.Errorf("all %s sent came back from %s, then no more input for %v (-timeout): send half-closes only when its input ends (Ctrl-D at a terminal, or the end of a pipe)", plural(int(sent), "byte"), tgt, timeout)
	}
	if got == 0 {
		return fmt.Errorf("nothing came back from %s within %v (-timeout) of the %s sent", tgt, timeout, plural(int(sent), "byte"))
	}
	return fmt.Errorf("only %d of %s came back from %s, then nothing more within %v (-timeout)", got, plural(int(sent), "byte"), tgt, timeout)
}

// exchange sends a stream on conn, half-closes, and copies the reply out,
// writing and reading at the same time: a client that wrote everything
// first would deadlock against the server's backpressure.
type exchange struct {
	ctx      context.Context
	tgt      target.Target
	conn     streamConn
	verify   bool
	patience time.Duration

	silence *silence // nil: no -timeout

	sent, received atomic.Int64
	halfClosed     atomic.Bool
	// closedAtHalfClose is set when the server's close came after the
	// half-close: a path that turns one into the other looks so too.
	closedAtHalfClose bool
	readingInput      atomic.Bool // the writer is blocked on its input
	// The first bytes each way, to recognise another protocol's answer.
	sentHead, replyHead []byte
	last                byte // the last byte of the reply
}

// headSize is how much of each direction an exchange keeps to recognise
// another protocol.
const headSize = 8

// inFlight bounds how many sent chunks -verify keeps while their echo is on
// its way; the writer waits when the server falls that far behind.
const inFlight = 256

// stallError is a reply that stopped, with no close, for the patience
// after the half-close.
type stallError struct{ sent, received int64 }

func (e *stallError) Error() string { return "no close after the half-close" }

func (e *stallError) explain(tgt target.Target, patience time.Duration) error {
	switch {
	case e.received >= e.sent:
		return fmt.Errorf("the echo was complete (%s) but %s did not close the connection within %v of the half-close: the server should close once the client has half-closed and the echo is sent", plural(int(e.received), "byte"), tgt, patience)
	case e.received == 0:
		return fmt.Errorf("nothing came back from %s, and nothing %v after the half-close", tgt, patience)
	}
	return fmt.Errorf("only %d of %s came back from %s, then nothing for %v after the half-close", e.received, plural(int(e.sent), "byte"), tgt, patience)
}

func (x *exchange) run(src io.Reader, out io.Writer) error {
	var sent chan []byte
	if x.verify {
		sent = make(chan []byte, inFlight)
	}
	type result struct {
		n   int64
		err error
	}
	wrote := make(chan result, 1)
	go func() {
		n, err := x.send(src, sent)
		wrote <- result{n, err}
	}()

	var v *pattern.Verifier
	dst := out
	if x.verify {
		v = pattern.NewVerifier(&chunkReader{ch: sent})
		dst = io.MultiWriter(out, v)
	}
	rerr := x.copyReply(dst)
	if rerr != nil {
		// Unblock the writer: it may wait on the server.
		x.conn.Close()
	}
	if sent != nil {
		// Nothing verifies from here on, even after a clean EOF (a server
		// that closed early, at a session limit, while input remains): the
		// writer must not wait on sent.
		go func() {
			for range sent {
			}
		}()
	}
	var w result
	if rerr != nil && x.readingInput.Load() {
		// The writer waits on input that may never come (a pipe that
		// stalls): it ends when the input does, and the answer is now.
		w = result{n: x.sent.Load()}
	} else {
		w = <-wrote
	}
	switch {
	case rerr != nil && errors.Is(rerr, os.ErrDeadlineExceeded) && x.halfClosed.Load() && x.ctx.Err() == nil && !x.silence.expired():
		return &stallError{sent: w.n, received: x.received.Load()}
	case rerr != nil:
		return replyError(rerr)
	case v != nil && v.Verified() < w.n && x.closedAtHalfClose:
		return fmt.Errorf("reply is %s shorter than the %d sent: the connection closed at the half-close, after %d bytes: %s", plural(int(w.n-v.Verified()), "byte"), w.n, v.Verified(), closedAtHalfClose(x.tgt))
	case v != nil && v.Verified() < w.n:
		return fmt.Errorf("reply is %s shorter than the %d sent: the server closed after %d bytes", plural(int(w.n-v.Verified()), "byte"), w.n, v.Verified())
	case w.err != nil:
		return w.err
	}
	return nil
}

// send copies src to the connection, handing a copy of each chunk to sent
// when it is not nil, then half-closes.
func (x *exchange) send(src io.Reader, sent chan<- []byte) (int64, error) {
	if sent != nil {
		defer close(sent)
	}
	buf := make([]byte, 32<<10)
	for {
		x.readingInput.Store(true)
		n, rerr := src.Read(buf)
		x.readingInput.Store(false)
		if n > 0 {
			if sent != nil {
				sent <- bytes.Clone(buf[:n])
			}
			if len(x.sentHead) < headSize {
				x.sentHead = append(x.sentHead, buf[:min(n, headSize-len(x.sentHead))]...)
			}
			w, err := x.conn.Write(buf[:n])
			x.sent.Add(int64(w))
			if err != nil {
				return x.sent.Load(), fmt.Errorf("send: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return x.sent.Load(), fmt.Errorf("read input: %w", rerr)
		}
	}
	if err := x.conn.CloseWrite(); err != nil {
		return x.sent.Load(), fmt.Errorf("half-close: %w", err)
	}
	// From here on the server has all it will get: it must go on
	// echoing, or close, within patience.
	x.halfClosed.Store(true)
	x.extendRead()
	return x.sent.Load(), nil
}

// extendRead gives the reader patience from now, once the client has
// half-closed; it leaves the deadline in the past once ctx has ended.
func (x *exchange) extendRead() {
	x.conn.SetReadDeadline(time.Now().Add(x.patience))
	if x.ctx.Err() != nil {
		x.conn.SetReadDeadline(time.Unix(1, 0))
	}
}

// copyReply copies the reply to dst until EOF. Unlike io.Copy it keeps
// dst's errors, such as a *pattern.Mismatch, as they are.
func (x *exchange) copyReply(dst io.Writer) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := x.conn.Read(buf)
		if n > 0 {
			if len(x.replyHead) < headSize {
				x.replyHead = append(x.replyHead, buf[:min(n, headSize-len(x.replyHead))]...)
			}
			x.received.Add(int64(n))
			x.last = buf[n-1]
			x.silence.heard()
			if x.halfClosed.Load() {
				x.extendRead()
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			x.closedAtHalfClose = x.halfClosed.Load()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func replyError(err error) error {
	var m *pattern.Mismatch
	switch {
	case errors.As(err, &m):
		if d := m.Dump(); d != "" {
			return fmt.Errorf("reply differs from what was sent: %w\n%s", err, d)
		}
		return fmt.Errorf("reply differs from what was sent: %w", err)
	case errors.Is(err, pattern.ErrTooLong):
		return err
	default:
		return fmt.Errorf("read reply: %w", err)
	}
}

// chunkReader reads the chunks sent on ch as one stream.
type chunkReader struct {
	ch  <-chan []byte
	cur []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		b, ok := <-r.ch
		if !ok {
			return 0, io.EOF
		}
		r.cur = b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// sendDatagram sends what src holds as one datagram and prints the first
// reply.
func sendDatagram(ctx context.Context, tgt target.Target, src io.Reader, o sendOptions, out io.Writer) error {
	const max = 65507 // the largest UDP payload over IPv4
	msg, err := io.ReadAll(io.LimitReader(src, max+1))
	if err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	if len(msg) > max {
		return fmt.Errorf("the input is more than a datagram holds (%d bytes)", max)
	}
	addr, err := target.Resolve(ctx, tgt.Addr())
	if err != nil {
		return err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", tgt, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return fmt.Errorf("send to %s: %w", tgt, err)
	}
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(o.patience))
	if ctx.Err() != nil {
		c.SetReadDeadline(time.Unix(1, 0))
	}
	n, err := c.Read(buf)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("nothing is listening on %s (the port is closed)", tgt)
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil:
		return fmt.Errorf("no reply from %s within %v (-patience): the datagram or its reply was lost, or nothing answers there", tgt, o.patience)
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("no reply from %s within %v (-timeout)", tgt, o.timeout)
	case err != nil:
		return fmt.Errorf("read reply: %w", err)
	}
	if _, err := out.Write(buf[:n]); err != nil {
		return err
	}
	if o.verify {
		if d := pattern.FirstDiff(buf[:n], msg); d >= 0 {
			return replyError(pattern.Diff(buf[:n], msg, d, 0))
		}
		if n != len(msg) {
			return fmt.Errorf("the reply is %s long; %s were sent", plural(n, "byte"), plural(len(msg), "byte"))
		}
	}
	return nil
}
