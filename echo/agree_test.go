package echo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/bandwidth"
	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/internal/testkit"
)

// A scenario is a scripted session that both engines must play alike.
type scenario struct {
	name   string
	config func(*Server)
	// proxy serves the scenario behind a PROXY protocol listener
	// (internal/proxied), whose connections reach the event loops through
	// Adopt.
	proxy bool
	// script plays the client's part and describes what it saw in words
	// that must be the same whichever engine served it: saw.
	script func(t *testing.T, srv *Server, addr string) string
	saw    string
	// What every engine must report: the end of each connection, sorted,
	// and the limits applied.
	reasons []string
	limited map[Reason]uint64
	// exactBytes is whether the TCP byte counts are the same whatever the
	// timing: then the server must count bytes each way.
	exactBytes bool
	bytes      uint64
}

// outcome is what one engine made of a scenario.
type outcome struct {
	Saw               string
	Reasons           []string
	Accepted          uint64
	Limited           map[Reason]uint64
	BytesIn, BytesOut uint64
}

// TestEnginesAgree plays the same scripted sessions through each engine and
// asserts that they give the same bytes back, end each connection for the
// same reason, and count the same in Stats.
func TestEnginesAgree(t *testing.T) {
	for _, sc := range agreeScenarios() {
		t.Run(sc.name, func(t *testing.T) {
			var first outcome
			for i, engine := range testEngines() {
				got := playScenario(t, sc, engine)
				want := outcome{Saw: sc.saw, Reasons: sc.reasons, Accepted: uint64(len(sc.reasons)),
					Limited: sc.limited}
				if sc.exactBytes {
					want.BytesIn, want.BytesOut = sc.bytes, sc.bytes
				}
				if want.Limited == nil {
					want.Limited = map[Reason]uint64{}
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s engine:\n got %+v\nwant %+v", engine, got, want)
				}
				if i == 0 {
					first = got
				} else if !reflect.DeepEqual(got, first) {
					t.Errorf("engines disagree:\n%s: %+v\n%s: %+v", testEngines()[0], first, engine, got)
				}
			}
		})
	}
}

func playScenario(t *testing.T, sc scenario, engine string) outcome {
	t.Helper()
	var log testkit.Buffer
	srv := &Server{Engine: engine, Logger: slogJSON(&log)}
	if sc.config != nil {
		sc.config(srv)
	}
	var addr string
	if sc.proxy {
		l := proxied.NewListener(loopbackListener(t), proxied.Config{})
		serveOn(t, srv, l)
		addr = l.Addr().String()
	} else {
		addr = serveTCP(t, srv)
	}
	saw := sc.script(t, srv, addr)
	waitFor(t, "every connection to end", func() bool { return srv.Stats().Conns == 0 })
	st := srv.Stats()
	o := outcome{Saw: saw, Accepted: st.Accepted, Limited: map[Reason]uint64{}}
	for r, n := range st.Limited {
		if n > 0 {
			o.Limited[r] = n
		}
	}
	if sc.exactBytes {
		o.BytesIn, o.BytesOut = st.TCPBytesIn, st.TCPBytesOut
	}
	for line := range strings.Lines(log.String()) {
		var rec struct{ Msg, Reason string }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec.Msg == "connection closed" {
			o.Reasons = append(o.Reasons, rec.Reason)
		}
	}
	slices.Sort(o.Reasons)
	return o
}

// proxyHeader is a PROXY protocol v1 header naming a client.
const proxyHeader = "PROXY TCP4 192.0.2.1 127.0.0.1 40000 7007\r\n"

// readAll reads c to its end, closes it, and describes what arrived against
// what was sent, leaving out how the connection ended (a FIN or a reset may
// race).
func readAll(c net.Conn, sent []byte) string {
	got, _ := io.ReadAll(c)
	c.Close()
	return fmt.Sprintf("%d bytes back, the first %d sent: %v", len(got), len(got),
		len(got) <= len(sent) && bytes.Equal(got, sent[:len(got)]))
}

func agreeScenarios() []scenario {
	return []scenario{{
		name: "half-close with megabytes in flight",
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			msg := payload(21, 4<<20)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(msg)
				c.CloseWrite()
				errc <- err
			}()
			saw := readAll(c, msg)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			return saw
		},
		saw:        "4194304 bytes back, the first 4194304 sent: true",
		reasons:    []string{"eof"},
		exactBytes: true, bytes: 4 << 20,
	}, {
		name: "half-close while the bandwidth budget holds the echo back",
		config: func(s *Server) {
			s.Bandwidth, _ = bandwidth.New(time.Now(), bandwidth.Config{PerConn: 2e6, PerAddr: 1e6})
		},
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			msg := payload(22, 500e3)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(msg)
				c.CloseWrite()
				errc <- err
			}()
			saw := readAll(c, msg)
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			return saw
		},
		saw:        "500000 bytes back, the first 500000 sent: true",
		reasons:    []string{"eof"},
		exactBytes: true, bytes: 500e3,
	}, {
		name: "reset",
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			roundTrip(t, c, []byte("x"))
			c.SetLinger(0)
			c.Close()
			return ""
		},
		reasons:    []string{"reset by client"},
		exactBytes: true, bytes: 1,
	}, {
		name:   "a client that never reads",
		config: func(s *Server) { s.IdleTimeout = 500 * time.Millisecond },
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			// More than the socket buffers hold: the write stalls until
			// the server gives up on the client and closes.
			_, err := c.Write(make([]byte, 64<<20))
			return fmt.Sprintf("write failed: %v", err != nil)
		},
		saw:     "write failed: true",
		reasons: []string{"idle-timeout"},
		limited: map[Reason]uint64{ReasonIdleTimeout: 1},
	}, {
		name:   "max-conns",
		config: func(s *Server) { s.MaxConns = 1 },
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			roundTrip(t, c, []byte("first"))
			expectRefused(t, "127.0.0.1", addr)
			c.CloseWrite()
			return readAll(c, nil)
		},
		saw:        "0 bytes back, the first 0 sent: true",
		reasons:    []string{"eof"},
		limited:    map[Reason]uint64{ReasonMaxConns: 1},
		exactBytes: true, bytes: uint64(len("first")),
	}, {
		name:   "max-conns-per-ip",
		config: func(s *Server) { s.MaxConnsPerIP = 1 },
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dialFrom(t, "127.0.0.1", addr)
			roundTrip(t, c, []byte("first"))
			expectRefused(t, "127.0.0.1", addr)
			other := dialFrom(t, "127.0.0.2", addr)
			roundTrip(t, other, []byte("another source"))
			c.CloseWrite()
			other.CloseWrite()
			return readAll(c, nil) + "; " + readAll(other, nil)
		},
		saw:        "0 bytes back, the first 0 sent: true" + "; " + "0 bytes back, the first 0 sent: true",
		reasons:    []string{"eof", "eof"},
		limited:    map[Reason]uint64{ReasonMaxConnsPerIP: 1},
		exactBytes: true, bytes: uint64(len("first") + len("another source")),
	}, {
		name:   "idle timeout with a slow but steady reader",
		config: func(s *Server) { s.IdleTimeout = 1500 * time.Millisecond },
		script: func(t *testing.T, _ *Server, addr string) string {
			// As in TestIdleTimeoutKeepsSlowReader: 8 MiB, read back in
			// steps of 96 KiB every 25ms, longer than the timeout in all;
			// then silence, which the timeout ends.
			msg := payload(22, 8<<20)
			c := dial(t, addr)
			errc := make(chan error, 1)
			go func() {
				_, err := c.Write(msg)
				errc <- err
			}()
			got := make([]byte, 0, len(msg))
			buf := make([]byte, 96<<10)
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for len(got) < len(msg) {
				<-tick.C
				n, err := c.Read(buf)
				if err != nil {
					t.Fatalf("after %d of %d bytes: %v", len(got), len(msg), err)
				}
				got = append(got, buf[:n]...)
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			return readAll(c, nil) + fmt.Sprintf(" after %d bytes, intact: %v", len(got), bytes.Equal(got, msg))
		},
		saw:        "0 bytes back, the first 0 sent: true after 8388608 bytes, intact: true",
		reasons:    []string{"idle-timeout"},
		limited:    map[Reason]uint64{ReasonIdleTimeout: 1},
		exactBytes: true, bytes: 8 << 20,
	}, {
		name:   "max-session-duration",
		config: func(s *Server) { s.MaxSessionDuration = 300 * time.Millisecond },
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			roundTrip(t, c, []byte("until the time is up"))
			return readAll(c, nil)
		},
		saw:        "0 bytes back, the first 0 sent: true",
		reasons:    []string{"max-session-duration"},
		limited:    map[Reason]uint64{ReasonMaxSessionDuration: 1},
		exactBytes: true, bytes: uint64(len("until the time is up")),
	}, {
		name:   "max-session-bytes",
		config: func(s *Server) { s.MaxSessionBytes = 1000 },
		script: func(t *testing.T, _ *Server, addr string) string {
			// Past the limit, and still sending after it: exactly the
			// first 1000 bytes come back, then EOF, never a reset.
			c := dial(t, addr)
			msg := payload(23, 64<<10)
			go c.Write(msg)
			got, err := io.ReadAll(c)
			c.Close()
			return fmt.Sprintf("%d bytes back, the first sent: %v, then EOF: %v",
				len(got), bytes.Equal(got, msg[:min(len(got), len(msg))]), err == nil)
		},
		saw:        "1000 bytes back, the first sent: true, then EOF: true",
		reasons:    []string{"max-session-bytes"},
		limited:    map[Reason]uint64{ReasonMaxSessionBytes: 1},
		exactBytes: true, bytes: 1000,
	}, {
		name:  "PROXY header with the first bytes",
		proxy: true,
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			if _, err := io.WriteString(c, proxyHeader+"hello"); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 5)
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, []byte(" and more"))
			c.CloseWrite()
			return string(got) + "; " + readAll(c, nil)
		},
		saw:        "hello; 0 bytes back, the first 0 sent: true",
		reasons:    []string{"eof"},
		exactBytes: true, bytes: uint64(len("hello and more")),
	}, {
		name:   "PROXY with max-session-bytes",
		proxy:  true,
		config: func(s *Server) { s.MaxSessionBytes = 1000 },
		script: func(t *testing.T, _ *Server, addr string) string {
			c := dial(t, addr)
			msg := payload(24, 64<<10)
			go c.Write(append([]byte(proxyHeader), msg...))
			got, err := io.ReadAll(c)
			c.Close()
			return fmt.Sprintf("%d bytes back, the first sent: %v, then EOF: %v",
				len(got), bytes.Equal(got, msg[:min(len(got), len(msg))]), err == nil)
		},
		saw:        "1000 bytes back, the first sent: true, then EOF: true",
		reasons:    []string{"max-session-bytes"},
		limited:    map[Reason]uint64{ReasonMaxSessionBytes: 1},
		exactBytes: true, bytes: 1000,
	}, {
		name: "drain",
		script: func(t *testing.T, srv *Server, addr string) string {
			c := dial(t, addr)
			roundTrip(t, c, []byte("before the drain"))
			shutdown := make(chan error, 1)
			go func() { shutdown <- srv.Shutdown(context.Background()) }()
			// A connection that came before Shutdown would be served.
			waitFor(t, "Shutdown to begin", srv.isClosing)
			waitFor(t, "the listener to close", func() bool {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err == nil {
					c.Close()
				}
				return err != nil
			})
			roundTrip(t, c, []byte("during the drain"))
			c.CloseWrite()
			saw := readAll(c, nil)
			return fmt.Sprintf("%s; Shutdown: %v", saw, <-shutdown)
		},
		saw:        "0 bytes back, the first 0 sent: true" + "; Shutdown: <nil>",
		reasons:    []string{"eof"},
		exactBytes: true, bytes: uint64(len("before the drain") + len("during the drain")),
	}, {
		name: "drain past its deadline",
		script: func(t *testing.T, srv *Server, addr string) string {
			c := dial(t, addr)
			roundTrip(t, c, []byte("then idle"))
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err := srv.Shutdown(ctx)
			return fmt.Sprintf("%s; Shutdown: %v", readAll(c, nil), errors.Is(err, context.DeadlineExceeded))
		},
		saw:        "0 bytes back, the first 0 sent: true" + "; Shutdown: true",
		reasons:    []string{"closed by server"},
		exactBytes: true, bytes: uint64(len("then idle")),
	}}
}
