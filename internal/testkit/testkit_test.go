package testkit

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartServesUntilTheTestEnds(t *testing.T) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	stopped := false
	var l net.Listener
	// Cleanups run last first: this one after Start's.
	t.Cleanup(func() {
		if !stopped {
			t.Error("stop was not called")
		}
	})
	addr := Start(t, func(ln net.Listener) error {
		mu.Lock()
		l = ln
		mu.Unlock()
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			wg.Go(func() {
				io.Copy(c, c)
				c.Close()
			})
		}
	}, func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		l.Close()
		wg.Wait()
	}, net.ErrClosed)
	c := Dial(t, addr)
	fmt.Fprint(c, "ping")
	c.CloseWrite()
	if got, err := io.ReadAll(c); string(got) != "ping" || err != nil {
		t.Fatalf("read %q, %v; want the echo of ping", got, err)
	}
}

func TestBufferTakesConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("x"))
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Fatalf("buffer holds %d bytes, want 800", len(got))
	}
}

func TestWaitForPollsUntilTheConditionHolds(t *testing.T) {
	n := 0
	WaitFor(t, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("WaitFor returned after %d polls, want 3", n)
	}
}
