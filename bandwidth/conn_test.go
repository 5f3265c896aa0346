package bandwidth

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

// pipe returns a throttled Conn and the other end, whose reads are drained
// into the returned channel's count when the writer is done.
func pipe(t *testing.T, cfg Config) (*Conn, <-chan int64) {
	t.Helper()
	client, server := net.Pipe()
	c := newLimiter(t, cfg).Conn(server, netip.MustParseAddr("192.0.2.1"))
	got := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, client)
		got <- n
	}()
	t.Cleanup(func() { client.Close(); c.Close() })
	return c, got
}

func TestConnPacesWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, got := pipe(t, Config{PerAddr: 1e6})
		start := time.Now()
		if n, err := c.Write(make([]byte, 1e6)); n != 1e6 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		// The burst goes at once, the rest at 1 MB/s.
		if took := time.Since(start); took < 850*time.Millisecond || took > time.Second {
			t.Errorf("1 MB at 1 MB/s took %v, want about 0.9s", took)
		}
		c.Close()
		if n := <-got; n != 1e6 {
			t.Errorf("the other end read %d bytes, want 1000000", n)
		}
	})
}

func TestConnCloseEndsWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := pipe(t, Config{PerConn: 1000})
		done := make(chan error, 1)
		go func() {
			_, err := c.Write(make([]byte, 1e6))
			done <- err
		}()
		synctest.Wait() // the Write waits for its budget
		start := time.Now()
		c.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write during Close = %v, want net.ErrClosed", err)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("Close took %v to end the wait", took)
		}
	})
}

func TestConnWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _ := pipe(t, Config{PerConn: 1e6})
		c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Write(make([]byte, 1e6))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write past its deadline = %d, %v; want a timeout", n, err)
		}
		// The burst and about 200ms at 1 MB/s.
		if n < 250e3 || n > 350e3 {
			t.Errorf("wrote %d bytes before the deadline, want about 300000", n)
		}
	})
}
