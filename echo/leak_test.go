package echo

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestNoDescriptorLeak(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts descriptors in /proc")
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		before := countFDs(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &Server{Engine: engine}
		done := make(chan error, 1)
		go func() { done <- srv.Serve(context.Background(), l) }()
		addr := l.Addr().String()

		// Sessions that end every way a session ends: half-close, reset
		// mid-echo, and still open when the server closes.
		var wg sync.WaitGroup
		for i := range 30 {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			tc := c.(*net.TCPConn)
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			switch i % 3 {
			case 0:
				wg.Go(func() {
					defer tc.Close()
					tc.Write([]byte("bye"))
					tc.CloseWrite()
					io.Copy(io.Discard, tc)
				})
			case 1:
				tc.Write(make([]byte, 256<<10))
				tc.SetLinger(0)
				tc.Close()
			case 2:
				roundTrip(t, tc, []byte("still open"))
				t.Cleanup(func() { tc.Close() })
			}
		}
		wg.Wait()
		srv.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Serve = %v, want ErrServerClosed", err)
		}
		// The clients' own sockets still open are the third kind: one
		// each. Everything the server opened must be closed.
		waitFor(t, "the server's descriptors to close", func() bool {
			return countFDs(t) == before+10
		})
	})
}

func TestBusyConnectionDoesNotStarveOthers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		_, addr := startServer(t, engine)
		busy := dial(t, addr)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		t.Cleanup(func() {
			close(stop)
			busy.Close()
			wg.Wait()
		})
		// One client streams as fast as the server echoes...
		wg.Go(func() { io.Copy(io.Discard, busy) })
		wg.Go(func() {
			chunk := make([]byte, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := busy.Write(chunk); err != nil {
					return
				}
			}
		})
		// ...while another gets each of its echoes back.
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		for range 50 {
			roundTrip(t, c, []byte("am I served?"))
		}
	})
}
