package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/echod/echod/internal/pattern"
)

func runSend(ctx context.Context, args []string, std stdio) error {
	fs := newFlagSet("send", "echod send [-addr HOST:PORT] [-timeout D] [-verify] [MESSAGE...]", std.out)
	addr := fs.String("addr", "localhost:7007", "`HOST:PORT` of the echo server")
	timeout := fs.Duration("timeout", 10*time.Second, "give up if the whole exchange takes longer (0: never)")
	verify := fs.Bool("verify", false, "exit 1 unless the reply is exactly what was sent")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return usagef("send", "invalid -addr %q: %v", *addr, err)
	}
	if *timeout < 0 {
		return usagef("send", "-timeout must not be negative, got %v", *timeout)
	}
	var src io.Reader = std.in
	if fs.NArg() > 0 {
		src = strings.NewReader(strings.Join(fs.Args(), " "))
	}

	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", *addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("nothing is listening on %s", *addr)
		}
		return fmt.Errorf("connect to %s: %w", *addr, err)
	}
	defer conn.Close()
	c := conn.(*net.TCPConn)
	// An expired or cancelled ctx unblocks both directions at once.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	x := exchange{conn: c, verify: *verify}
	err = x.run(src, std.out)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("no complete reply from %s within %v (-timeout); a server that holds the echo until the client half-closes stalls here", *addr, *timeout)
		}
		return ctx.Err()
	}
	return err
}

// exchange sends a stream on conn, half-closes, and copies the reply out,
// writing and reading at the same time: a client that wrote everything
// first would deadlock against the server's backpressure.
type exchange struct {
	conn   *net.TCPConn
	verify bool
}

// inFlight bounds how many sent chunks -verify keeps while their echo is on
// its way; the writer waits when the server falls that far behind.
const inFlight = 256

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
	rerr := copyReply(dst, x.conn)
	if rerr != nil {
		// Unblock the writer: it may wait on the server or on sent.
		x.conn.Close()
		if sent != nil {
			go func() {
				for range sent {
				}
			}()
		}
	}
	w := <-wrote
	switch {
	case rerr != nil:
		return replyError(rerr)
	case w.err != nil:
		return w.err
	case v != nil && v.Verified() < w.n:
		return fmt.Errorf("reply is %d bytes shorter than the %d sent: the server closed after %d bytes", w.n-v.Verified(), w.n, v.Verified())
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
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if sent != nil {
				sent <- bytes.Clone(buf[:n])
			}
			w, err := x.conn.Write(buf[:n])
			total += int64(w)
			if err != nil {
				return total, fmt.Errorf("send: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return total, fmt.Errorf("read input: %w", rerr)
		}
	}
	if err := x.conn.CloseWrite(); err != nil {
		return total, fmt.Errorf("half-close: %w", err)
	}
	return total, nil
}

// copyReply copies the reply from conn to dst until EOF. Unlike io.Copy it
// keeps dst's errors, such as a *pattern.Mismatch, as they are.
func copyReply(dst io.Writer, conn net.Conn) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
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
