package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/testkit"
)

// TestSoak runs many kinds of clients against a server with every limit on,
// for as long as ECHOD_SOAK says (such as 3m) with each engine, then checks that every
// connection, goroutine (TestMain's goleak) and descriptor is gone. It is
// skipped unless ECHOD_SOAK is set.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("ECHOD_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set ECHOD_SOAK to a duration, such as 3m, to run the soak test")
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		checkFDs(t)
		var log testkit.Buffer
		srv := &Server{
			Engine:             engine,
			Logger:             debugLogger(&log),
			MaxConns:           60,
			MaxConnsPerIP:      10,
			IdleTimeout:        time.Second,
			MaxSessionDuration: 2 * time.Second,
			MaxSessionBytes:    4 << 20,
			UDPSourceRate:      50,
			UDPGlobalRate:      120,
		}
		addr := serveTCP(t, srv)
		udpAddr := startUDP(t, srv, "127.0.0.1")

		end := time.Now().Add(d)
		ctx, cancel := context.WithDeadline(context.Background(), end)
		defer cancel()
		var (
			wg       sync.WaitGroup
			verified atomic.Int64 // sessions whose echo was checked byte for byte
			refused  atomic.Int64 // sessions a limit turned away
			udpOK    atomic.Int64
			failures = make(chan error, 100)
		)
		fail := func(err error) {
			select {
			case failures <- err:
			default:
			}
		}
		// Clients come from ten loopback addresses; worker i uses the (i%10)th.
		// The 84 TCP workers are more than MaxConns, and the idlers crowd two
		// of the addresses past MaxConnsPerIP.
		dialer := func(i int) *net.Dialer {
			return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%10))}}
		}
		// A session's helper goroutines go in bg; they end when c is closed.
		worker := func(i int, session func(c *net.TCPConn, seed uint64, bg *sync.WaitGroup) error) {
			wg.Go(func() {
				for seed := uint64(i) << 32; ctx.Err() == nil; seed++ {
					c, err := dialer(i).DialContext(ctx, "tcp", addr)
					if err != nil {
						if ctx.Err() == nil && time.Now().Before(end) {
							refused.Add(1)
						}
						continue
					}
					c.SetDeadline(time.Now().Add(time.Minute))
					var bg sync.WaitGroup
					if err := session(c.(*net.TCPConn), seed, &bg); err != nil && ctx.Err() == nil {
						fail(fmt.Errorf("worker %d: %w", i, err))
					}
					c.Close()
					bg.Wait()
				}
			})
		}

		for i := range 40 { // exact echo of up to 1 MiB, then half-close
			worker(i, func(c *net.TCPConn, seed uint64, bg *sync.WaitGroup) error {
				size := int64(seed%(1<<20)) + 1
				bg.Go(func() {
					io.Copy(c, io.LimitReader(pattern.NewStream(seed), size))
					c.CloseWrite()
				})
				v := pattern.NewVerifier(io.LimitReader(pattern.NewStream(seed), size))
				_, err := io.Copy(v, c)
				var m *pattern.Mismatch
				switch {
				case errors.As(err, &m):
					return err // corruption is never acceptable
				case err != nil || v.Verified() == 0:
					refused.Add(1) // turned away by a limit: reset
				case v.Verified() != size:
					return fmt.Errorf("echo ended after %d of %d bytes", v.Verified(), size)
				default:
					verified.Add(1)
				}
				return nil
			})
		}
		for i := range 10 { // resets mid-stream
			worker(i, func(c *net.TCPConn, _ uint64, bg *sync.WaitGroup) error {
				bg.Go(func() { io.Copy(io.Discard, c) })
				c.Write(make([]byte, 256<<10))
				c.SetLinger(0)
				return nil
			})
		}
		for i := range 4 { // endless streams, which MaxSessionBytes cuts off
			worker(i, func(c *net.TCPConn, seed uint64, bg *sync.WaitGroup) error {
				bg.Go(func() { io.Copy(c, pattern.NewStream(seed)) })
				v := pattern.NewVerifier(pattern.NewStream(seed))
				_, err := io.Copy(v, c)
				var m *pattern.Mismatch
				if errors.As(err, &m) || v.Verified() > srv.MaxSessionBytes {
					return fmt.Errorf("stream: %d bytes echoed: %v", v.Verified(), err)
				}
				return nil
			})
		}
		for i := range 10 { // slow readers, which MaxSessionDuration cuts off
			worker(i, func(c *net.TCPConn, _ uint64, bg *sync.WaitGroup) error {
				bg.Go(func() { c.Write(make([]byte, 1<<20)) })
				buf := make([]byte, 4096)
				for range 300 {
					if _, err := c.Read(buf); err != nil {
						return nil
					}
					time.Sleep(10 * time.Millisecond)
				}
				return nil
			})
		}
		for i := range 20 { // idlers: say hello, then nothing; the server must close them
			worker(i%2, func(c *net.TCPConn, _ uint64, _ *sync.WaitGroup) error {
				c.Write([]byte("hello"))
				if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
					return nil // refused
				}
				start := time.Now()
				_, err := c.Read(make([]byte, 1))
				if err == nil {
					return errors.New("idle client got unsent bytes")
				}
				if took := time.Since(start); took > 5*time.Second {
					return fmt.Errorf("idle client closed only after %v", took)
				}
				return nil
			})
		}
		for i := range 4 { // UDP
			wg.Go(func() {
				c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))})
				if err != nil {
					fail(err)
					return
				}
				defer c.Close()
				buf := make([]byte, udpBufferSize)
				// Bursts of 20 datagrams of distinct sizes; replies are matched
				// by size, since some are dropped and late ones may arrive.
				for seed := uint64(i) << 32; ctx.Err() == nil; seed++ {
					sent := make(map[int][]byte)
					for j := range 20 {
						msg := payload(seed, int(seed%300)*32+j)
						sent[len(msg)] = msg
						c.WriteToUDPAddrPort(msg, udpAddr)
					}
					c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					for {
						n, _, err := c.ReadFromUDPAddrPort(buf)
						if err != nil {
							break
						}
						if msg, ok := sent[n]; ok {
							if pattern.FirstDiff(buf[:n], msg) >= 0 {
								fail(fmt.Errorf("UDP reply of %d bytes differs", n))
							}
							udpOK.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		close(failures)
		for err := range failures {
			t.Error(err)
		}
		waitFor(t, "every connection to close", func() bool { return srv.Stats().Conns == 0 })
		st := srv.Stats()
		t.Logf("verified %d sessions, %d turned away, %d UDP round trips; stats %+v",
			verified.Load(), refused.Load(), udpOK.Load(), st)
		if verified.Load() == 0 || udpOK.Load() == 0 {
			t.Error("no session got through")
		}
		for _, r := range []Reason{ReasonIdleTimeout, ReasonMaxConns, ReasonMaxConnsPerIP,
			ReasonMaxSessionDuration, ReasonMaxSessionBytes, ReasonUDPRateLimit, ReasonUDPGlobalCap} {
			// A short run may miss the rarer ones; a run of minutes must not.
			if st.Limited[r] == 0 && d >= time.Minute {
				t.Errorf("the soak never hit %v", r)
			}
		}
	})
}
