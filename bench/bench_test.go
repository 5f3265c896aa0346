package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// smoke is a short run's configuration: a few hundred milliseconds.
func smoke(addr string, mode Mode) Config {
	return Config{
		Addr:     addr,
		Mode:     mode,
		Conns:    4,
		Duration: 200 * time.Millisecond,
		Warmup:   50 * time.Millisecond,
		Timeout:  2 * time.Second,
		PID:      os.Getpid(), // the test servers run in this process
	}
}

func run(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// Each mode against a correct server: figures are produced, nothing is wrong.
func TestEveryModeAgainstACorrectServer(t *testing.T) {
	tcp := serveTCP(t, echo)
	udp := serveUDP(t, func([]byte) {})
	tests := []struct {
		name   string
		cfg    Config
		unit   string
		hasLat bool
	}{
		{"pingpong", smoke(tcp, PingPong), "message", true},
		{"pingpong depth 8", func() Config { c := smoke(tcp, PingPong); c.Depth = 8; return c }(), "message", true},
		{"bulk", smoke(tcp, Bulk), "byte", false},
		{"cycle", smoke(tcp, Cycle), "session", true},
		{"cycle 256 KiB", func() Config { c := smoke(tcp, Cycle); c.Size = 256 << 10; return c }(), "session", true},
		{"idle", func() Config { c := smoke(tcp, Idle); c.Conns = 200; return c }(), "connection", true},
		{"udp", func() Config { c := smoke(udp, UDP); c.Depth = 4; return c }(), "datagram", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.cfg)
			if err := res.Err(); err != nil {
				t.Fatalf("Err() = %v", err)
			}
			if res.Ops <= 0 || res.OpsPerSec <= 0 || res.Bytes <= 0 {
				t.Errorf("no figures: ops %d, ops/s %f, bytes %d", res.Ops, res.OpsPerSec, res.Bytes)
			}
			if res.Unit != tt.unit {
				t.Errorf("unit %q, want %q", res.Unit, tt.unit)
			}
			if res.Mismatches != 0 || res.Errors != 0 {
				t.Errorf("mismatches %d, errors %d (%v)", res.Mismatches, res.Errors, res.FirstError)
			}
			if tt.hasLat != (res.Latency != nil) {
				t.Fatalf("latency %+v, want it: %v", res.Latency, tt.hasLat)
			}
			if l := res.Latency; l != nil && !(0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max) {
				t.Errorf("percentiles out of order: %+v", l)
			}
			if res.Server == nil || res.Server.Error != "" || res.Server.RSSAfter <= 0 {
				t.Errorf("no server figures: %+v", res.Server)
			}
			if tt.cfg.Mode == Idle && (res.Idle == nil || res.Idle.Opened != int64(tt.cfg.Conns) || res.Idle.Served != res.Idle.Opened) {
				t.Errorf("idle: %+v, want all %d opened and served", res.Idle, tt.cfg.Conns)
			}
			// Echoes of datagrams sent in the warm-up count in the window,
			// so the window's verified count may pass its sent count by the depth.
			if tt.cfg.Mode == UDP && (res.UDP == nil || res.UDP.Sent+int64(tt.cfg.Conns*tt.cfg.Depth) < res.Ops) {
				t.Errorf("udp: %+v for %d verified", res.UDP, res.Ops)
			}
			var text bytes.Buffer
			if err := res.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`Mismatches:\s+0\n`).MatchString(text.String()) {
				t.Errorf("report lacks the mismatch count:\n%s", text.String())
			}
		})
	}
}

// A UDP echo of another length than the datagram is caught, and says both
// lengths, also when several echoes arrive at once (-depth) and the echo is
// longer than anything sent.
func TestUDPWrongLengthIsCaught(t *testing.T) {
	for _, tt := range []struct {
		name  string
		reply func(p []byte) []byte
		want  string
	}{
		{"longer", func(p []byte) []byte { return append(p, 'x') }, "datagram of 64 bytes echoed as 65 bytes"},
		{"much longer", func(p []byte) []byte { return append(p, make([]byte, 1000)...) }, "datagram of 64 bytes echoed as 1064 bytes"},
		{"shorter", func(p []byte) []byte { return p[:len(p)-1] }, "datagram of 64 bytes echoed as 63 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smoke(serveUDPReply(t, tt.reply), UDP)
			cfg.Size, cfg.Depth = 64, 8
			res := run(t, cfg)
			if err := res.Err(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Err() = %v, want it to say %q", err, tt.want)
			}
		})
	}
}

// A server that flips one byte is caught in every mode, with where and what.
func TestCorruptingServerIsCaught(t *testing.T) {
	const at = 100
	tcp := serveTCP(t, corruptAfter(at))
	idle := serveTCP(t, corruptAfter(0))
	udp := serveUDP(t, func(p []byte) { p[len(p)-1] ^= 0x20 })
	tests := []struct {
		name       string
		cfg        Config
		wantOffset int64
	}{
		{"pingpong", smoke(tcp, PingPong), at},
		{"pingpong depth 4", func() Config { c := smoke(tcp, PingPong); c.Depth = 4; return c }(), at},
		{"pingpong rate", func() Config { c := smoke(tcp, PingPong); c.Rate = 2000; return c }(), at},
		{"bulk", smoke(tcp, Bulk), at},
		{"cycle", func() Config { c := smoke(tcp, Cycle); c.Size = 1000; return c }(), at},
		{"idle", smoke(idle, Idle), 0},
		{"udp", smoke(udp, UDP), int64(DefaultSize(UDP) - 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.cfg)
			if res.Mismatches == 0 || res.FirstMismatch == nil {
				t.Fatalf("corruption not caught: %+v", res)
			}
			m := res.FirstMismatch
			if m.Offset != tt.wantOffset || m.Got != m.Want^0x20 {
				t.Errorf("first mismatch %+v, want offset %d with bit 0x20 flipped", m, tt.wantOffset)
			}
			err := res.Err()
			if err == nil || !strings.Contains(err.Error(), "differed from what was sent") || !strings.Contains(err.Error(), "differs: got 0x") {
				t.Errorf("Err() = %v", err)
			}
			// With a rate, the message is named: byte 100 is in the
			// second 64-byte message's pattern, after its header.
			if tt.cfg.Rate > 0 && !strings.Contains(m.Text, "message 1: byte 100 differs") {
				t.Errorf("first mismatch %q does not name message 1", m.Text)
			}
		})
	}
}

// A cycle server that drops the end of the echo, or adds to it, is caught.
func TestCycleCatchesShortAndLongReplies(t *testing.T) {
	short := serveTCP(t, func(c *net.TCPConn) {
		// Echo the first 10 bytes only, but read everything: closing with
		// unread data would reset the connection instead.
		io.Copy(c, io.LimitReader(c, 10))
		io.Copy(io.Discard, c)
	})
	long := serveTCP(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.Write([]byte("extra"))
	})
	for _, tt := range []struct{ name, addr, want string }{
		{"short", short, "reply ended after"},
		{"long", long, "longer than what was sent"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smoke(tt.addr, Cycle)
			cfg.Size = 100
			res := run(t, cfg)
			if res.Mismatches == 0 || !strings.Contains(res.FirstMismatch.Text, tt.want) {
				t.Fatalf("mismatches %d, first %+v; want %q", res.Mismatches, res.FirstMismatch, tt.want)
			}
		})
	}
}

// Nothing listening: every connect is refused, counted, and reported.
func TestRefusedConnectionsAreCounted(t *testing.T) {
	for _, mode := range []Mode{PingPong, Bulk, Cycle, Idle} {
		t.Run(string(mode), func(t *testing.T) {
			res := run(t, smoke(deadAddr(t), mode))
			if res.Errors == 0 || res.ErrorsByKind["connect refused"] != res.Errors {
				t.Fatalf("errors %d by kind %v", res.Errors, res.ErrorsByKind)
			}
			if err := res.Err(); err == nil || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("Err() = %v", err)
			}
		})
	}
}

// A server that resets connections mid-run: the resets are counted, and
// bench reconnects and goes on measuring.
func TestResetsMidRunAreCounted(t *testing.T) {
	addr := serveTCP(t, resetAfter(64*10))
	res := run(t, smoke(addr, PingPong))
	if res.ErrorsByKind["reset"] == 0 {
		t.Fatalf("errors %d by kind %v, want resets", res.Errors, res.ErrorsByKind)
	}
	if res.Ops == 0 || res.Mismatches != 0 {
		t.Errorf("ops %d mismatches %d", res.Ops, res.Mismatches)
	}
	if res.Err() == nil {
		t.Error("Err() = nil despite resets")
	}
}

// A server that never answers: replies time out and are counted.
func TestSilentServerTimesOut(t *testing.T) {
	addr := serveTCP(t, func(c *net.TCPConn) { io.Copy(io.Discard, c) })
	cfg := smoke(addr, PingPong)
	cfg.Conns = 1
	cfg.Duration = 500 * time.Millisecond
	cfg.Timeout = 100 * time.Millisecond
	res := run(t, cfg)
	if res.ErrorsByKind["timeout"] == 0 || res.Ops != 0 {
		t.Fatalf("ops %d, errors by kind %v", res.Ops, res.ErrorsByKind)
	}
}

// A server stalls once for 200 ms in the measured window. A closed loop
// records the stall in one message; with -rate, every message scheduled
// during the stall carries its share, so the stall shows in the percentiles.
func TestRateCorrectsCoordinatedOmission(t *testing.T) {
	const size, rate = 64, 1000
	stall := 200 * time.Millisecond
	for _, tt := range []struct {
		name string
		rate float64
	}{{"closed loop", 0}, {"scheduled", rate}} {
		t.Run(tt.name, func(t *testing.T) {
			// The stall starts at message 100: 50 ms into the window at
			// the rate, after the 50 ms warm-up.
			addr := serveTCP(t, stallAt(100*size, stall))
			cfg := smoke(addr, PingPong)
			cfg.Conns = 1
			cfg.Size = size
			cfg.Rate = tt.rate
			// The messages scheduled in the stall's first 170 ms wait
			// 30 ms or more: a fifth of the 800 ms window, so p90 is
			// one of them. The window goes on for 550 ms after the
			// stall ends (at 300 ms), so a busy machine that falls
			// behind the schedule still has the stall and the messages
			// after it measured.
			cfg.Duration = 800 * time.Millisecond
			if tt.rate == 0 {
				// The closed loop gets there at its own pace; measure
				// from the start so the stall is in the window, and
				// for long enough that a busy machine gets through the
				// 99 messages before it and the stall itself: a message
				// still out when the window ends is not measured.
				cfg.Warmup = 0
				cfg.Duration = 2 * time.Second
			}
			res := run(t, cfg)
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			l := res.Latency
			t.Logf("p50 %v p90 %v max %v over %d messages", l.P50, l.P90, l.Max, l.Count)
			if l.Max < stall*9/10 {
				t.Fatalf("max %v: the %v stall was not measured", l.Max, stall)
			}
			if tt.rate == 0 && l.P90 >= 30*time.Millisecond {
				t.Errorf("closed loop: p90 %v; the stall should be one message of %d", l.P90, l.Count)
			}
			if tt.rate > 0 && l.P90 < 30*time.Millisecond {
				t.Errorf("scheduled: p90 %v over %d messages; the messages scheduled during the stall should carry it", l.P90, l.Count)
			}
		})
	}
}

// -n alone ends the run once the count is measured.
func TestCountEndsTheRun(t *testing.T) {
	addr := serveTCP(t, echo)
	cfg := smoke(addr, PingPong)
	cfg.Duration = 0
	cfg.Count = 500
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Interrupted || res.Ops != cfg.Count || res.Seconds <= 0 {
		t.Fatalf("ops %d interrupted %v, want about %d", res.Ops, res.Interrupted, cfg.Count)
	}
}

// A cancelled context stops the run and marks the result.
func TestCancelStopsTheRun(t *testing.T) {
	addr := serveTCP(t, echo)
	cfg := smoke(addr, PingPong)
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || res.Ops == 0 {
		t.Fatalf("interrupted %v ops %d", res.Interrupted, res.Ops)
	}
}

func TestSourceAddressesAreUsed(t *testing.T) {
	seen := make(chan string, 100)
	addr := serveTCP(t, func(c *net.TCPConn) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		select {
		case seen <- host:
		default:
		}
		io.Copy(c, c)
	})
	cfg := smoke(addr, Idle)
	cfg.Sources, _ = ParseSources("127.0.0.2-127.0.0.3")
	res := run(t, cfg)
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range cfg.Conns {
		got[<-seen] = true
	}
	if !got["127.0.0.2"] || !got["127.0.0.3"] || len(got) != 2 {
		t.Errorf("connections came from %v, want 127.0.0.2 and 127.0.0.3", got)
	}
}

// With a Progress writer, a self-rewriting line comes about once a second,
// with the rate and the p50 and p99 latency of the last second, and it is
// cleared before Run returns.
func TestProgressLine(t *testing.T) {
	t.Parallel()
	addr := serveTCP(t, echo)
	cfg := smoke(addr, PingPong)
	// One tick, at 1 s: the run ends 0.9 s later, so a busy machine that
	// holds the runner up until the run's end is all that could hide it.
	cfg.Duration = 1900 * time.Millisecond
	cfg.Warmup = 0
	var progress bytes.Buffer
	cfg.Progress = &progress
	run(t, cfg)
	got := progress.String()
	if !regexp.MustCompile(`^\r\x1b\[K +1\.\ds +\d+ messages/s  p50 [\d.]+[µm]?s p99 [\d.]+[µm]?s  errors 0  mismatches 0\r\x1b\[K$`).MatchString(got) {
		t.Errorf("progress output %q", got)
	}
}

func TestJSONHasTheFigures(t *testing.T) {
	addr := serveTCP(t, echo)
	res := run(t, smoke(addr, PingPong))
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"mode", "ops_per_sec", "mb_per_sec", "latency", "mismatches", "errors", "server"} {
		if _, ok := m[key]; !ok {
			t.Errorf("JSON lacks %q: %s", key, b)
		}
	}
	lat := m["latency"].(map[string]any)
	if lat["p99_9_ns"].(float64) <= 0 {
		t.Errorf("latency %v", lat)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // in the error; "" for none
	}{
		{"defaults", Config{Addr: "127.0.0.1:7"}, ""},
		{"no address", Config{}, "invalid address"},
		{"no port", Config{Addr: "127.0.0.1"}, "invalid address"},
		{"unknown mode", Config{Addr: "a:1", Mode: "flood"}, `unknown mode "flood"`},
		{"negative conns", Config{Addr: "a:1", Conns: -1}, "connections must be"},
		{"depth for bulk", Config{Addr: "a:1", Mode: Bulk, Depth: 2}, "depth applies to pingpong and udp"},
		{"huge size", Config{Addr: "a:1", Size: MaxSize + 1}, "size must be"},
		{"idle size", Config{Addr: "a:1", Mode: Idle, Size: 10}, "size does not apply"},
		{"idle count", Config{Addr: "a:1", Mode: Idle, Count: 10}, "count does not apply"},
		{"udp small", Config{Addr: "a:1", Mode: UDP, Size: 4}, "udp size must be"},
		{"udp big", Config{Addr: "a:1", Mode: UDP, Size: 70000}, "udp size must be"},
		{"negative duration", Config{Addr: "a:1", Duration: -1}, "duration must not be negative"},
		{"negative warmup", Config{Addr: "a:1", Warmup: -1}, "warm-up must not be negative"},
		{"negative pid", Config{Addr: "a:1", PID: -1}, "pid must not be negative"},
		{"negative rate", Config{Addr: "a:1", Rate: -1}, "rate must not be negative"},
		{"rate for bulk", Config{Addr: "a:1", Mode: Bulk, Rate: 10}, "rate applies to pingpong only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestRunRejectsAProcessItCannotObserve(t *testing.T) {
	cfg := smoke(serveTCP(t, echo), PingPong)
	cfg.PID = 1 << 30 // above Linux's pid_max
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "cannot observe server process") {
		t.Fatalf("Run() = %v", err)
	}
}

// -pid of a process that does not serve the port under test is named, not
// reported as the server's CPU time.
func TestPIDThatDoesNotOwnThePortIsNamed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	addr := serveTCP(t, echo) // served by this process
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Skipf("no sleep to stand in for another process: %v", err)
	}
	t.Cleanup(func() {
		other.Process.Kill()
		other.Wait()
	})
	for _, tt := range []struct {
		pid  int
		warn bool
	}{{os.Getpid(), false}, {other.Process.Pid, true}} {
		cfg := smoke(addr, PingPong)
		cfg.PID = tt.pid
		res := run(t, cfg)
		warned := strings.Contains(strings.Join(res.Hints, "\n"), "does not own port")
		if warned != tt.warn {
			t.Errorf("-pid %d: hints %q, want a warning: %v", tt.pid, res.Hints, tt.warn)
		}
	}
}

func TestBoundInodes(t *testing.T) {
	table := []byte(`  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B5F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1B5F 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
`)
	if got := boundInodes(table, 7007, true); strings.Join(got, ",") != "111" {
		t.Errorf("listening on 7007: %q, want [111]", got)
	}
	if got := boundInodes(table, 7007, false); strings.Join(got, ",") != "111,222" {
		t.Errorf("bound to 7007: %q, want [111 222]", got)
	}
	if got := boundInodes(table, 9, true); len(got) != 0 {
		t.Errorf("port 9: %q, want none", got)
	}
}
