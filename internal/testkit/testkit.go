// Package testkit is what echod's tests share to drive real servers over
// loopback: a server started on a fresh port and stopped when the test ends,
// a client connection, a buffer that goroutines may write at once (a
// logger's), and a wait for a condition with a deadline instead of a sleep.
package testkit

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// Start listens on a fresh loopback port (127.0.0.1:0), runs serve on it on
// a goroutine, and returns its address. When the test ends it calls stop and
// waits for serve to return, failing the test unless serve's error is one of
// want (or nil).
func Start(t testing.TB, serve func(net.Listener) error, stop func(), want ...error) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- serve(l) }()
	t.Cleanup(func() {
		stop()
		err := <-done
		for _, w := range want {
			if errors.Is(err, w) {
				return
			}
		}
		if err != nil {
			t.Errorf("serve on %s returned %v, want one of %v", l.Addr(), err, want)
		}
	})
	return l.Addr().String()
}

// Dial connects to addr over TCP, with a 30-second deadline on the
// connection so that a stuck test fails rather than hangs. The connection
// is closed when the test ends.
func Dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// Buffer is a bytes.Buffer that goroutines may write at once, such as the
// output of a logger that a server shares.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// WaitFor polls cond until it holds, and fails the test if it does not
// within 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
