package bandwidth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	l, err := New(time.Now(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// send has f send in reads of up to chunk, as an engine does: it sizes
// each read by Allow, spends, and waits before writing. It returns the
// bytes sent, headers included (Wire), by end.
func send(f *Flow, chunk int, end time.Time) int64 {
	var sent int64
	for {
		n := min(f.Allow(time.Now()), chunk)
		time.Sleep(f.Spend(time.Now(), n))
		if time.Now().After(end) {
			return sent
		}
		sent += int64(Wire(n))
	}
}

// payload returns the payload that costs w bytes on the wire (see Wire).
func payload(w int) int {
	for p := 1; ; p++ {
		if n := w - p*PacketOverhead; Wire(n) == w {
			return n
		}
	}
}

// window is how long the rate tests measure: long enough that one burst
// is a small part of what is counted.
const window = 10 * time.Second

func TestFlowRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{PerConn: 1e6})
		f := l.Open(time.Now(), netip.MustParseAddr("192.0.2.1"))
		defer f.Close()
		got := send(f, 32<<10, time.Now().Add(window))
		// A burst of a tenth of a second, plus the rate.
		if lo, hi := int64(1e6*window.Seconds()), int64(1e6*(window.Seconds()+burstTime)); got < lo-32<<10 || got > hi {
			t.Errorf("sent %d bytes in %v at 1MB/s, want %d to %d", got, window, lo, hi)
		}
	})
}

// TestAddressShared is the promise of the per-address budget: 16
// connections of one address share one rate, while another address gets
// all of its own.
func TestAddressShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{PerAddr: 1e6})
		end := time.Now().Add(window)
		var mu sync.Mutex
		sent := map[string]int64{}
		var wg sync.WaitGroup
		for i := range 17 {
			addr := "192.0.2.1"
			if i == 16 {
				addr = "192.0.2.2"
			}
			wg.Go(func() {
				f := l.Open(time.Now(), netip.MustParseAddr(addr))
				defer f.Close()
				n := send(f, 32<<10, end)
				mu.Lock()
				sent[addr] += n
				mu.Unlock()
			})
		}
		wg.Wait()
		for addr, n := range sent {
			rate := float64(n) / window.Seconds()
			if rate > 1.1e6 || rate < 0.95e6 {
				t.Errorf("%s was sent %.0f bytes/s, want 0.95 to 1.1 MB/s", addr, rate)
			}
		}
	})
}

func TestAllowSizesReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{PerConn: 1e6, PerAddr: 2e6})
		f := l.Open(time.Now(), netip.MustParseAddr("2001:db8::1"))
		defer f.Close()
		// A fresh bucket holds its burst: a tenth of a second.
		if n := f.Allow(time.Now()); n != 100e3 {
			t.Fatalf("Allow = %d; want the burst of 100000 bytes", n)
		}
		if wait := f.Spend(time.Now(), payload(100e3)); wait != 0 {
			t.Fatalf("Spend of the burst waits %v, want none", wait)
		}
		// In debt, a connection still reads a little, to take its turn.
		if n := f.Allow(time.Now()); n != MinRead {
			t.Fatalf("Allow after the burst = %d; want MinRead", n)
		}
		// Spending past the burst asks for a wait as long as the debt:
		// 50,000 bytes on the wire.
		if wait := f.Spend(time.Now(), payload(50e3)); wait != 50*time.Millisecond {
			t.Fatalf("Spend past the burst waits %v, want 50ms", wait)
		}
		// The same /64 shares the address bucket: 150 KB taken of 200 KB.
		g := l.Open(time.Now(), netip.MustParseAddr("2001:db8::2"))
		defer g.Close()
		if n := g.Allow(time.Now()); n != 50e3 {
			t.Errorf("another connection of the /64 may send %d, want the 50000 its address has left", n)
		}
		time.Sleep(time.Second)
		if n := g.Allow(time.Now()); n != 100e3 {
			t.Errorf("a second later it may send %d, want 100000", n)
		}
	})
}

// TestAddressFairness: a connection with one byte to send, beside 16 that
// take all their address's budget, waits its turn rather than forever.
func TestAddressFairness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{PerAddr: 1e6})
		end := time.Now().Add(window)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				f := l.Open(time.Now(), netip.MustParseAddr("192.0.2.1"))
				defer f.Close()
				send(f, 64<<10, end)
			})
		}
		time.Sleep(time.Second)
		f := l.Open(time.Now(), netip.MustParseAddr("192.0.2.1"))
		defer f.Close()
		f.Allow(time.Now())
		// Its turn comes after what the others have charged: 16 reads
		// of up to 64 KiB at most, a second at 1 MB/s.
		if wait := f.Spend(time.Now(), 1); wait > 1100*time.Millisecond {
			t.Errorf("one byte waits %v behind 16 hogs, want a second at most", wait)
		}
		wg.Wait()
	})
}

func TestNilLimiter(t *testing.T) {
	l, err := New(time.Now(), Config{})
	if l != nil || err != nil {
		t.Fatalf("New with no limits = %v, %v; want nil, nil", l, err)
	}
	f := l.Open(time.Now(), netip.MustParseAddr("192.0.2.1"))
	if n := f.Allow(time.Now()); n < 1<<20 {
		t.Errorf("nil Flow Allow = %d", n)
	}
	if wait := f.Spend(time.Now(), 1<<30); wait != 0 {
		t.Errorf("nil Flow Spend waits %v", wait)
	}
	f.Close()
	if !l.Datagram(time.Now(), netip.MustParseAddr("192.0.2.1"), 65507) || l.Admit(time.Now()) != nil {
		t.Error("a nil Limiter limited something")
	}
}

func TestDatagram(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(t, Config{PerAddr: 1e6})
		a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.2")
		var passed int
		for range 100 {
			// 10,000 bytes on the wire.
			if l.Datagram(time.Now(), a, payload(10e3)) {
				passed++
			}
		}
		// The burst: 100 KB.
		if passed != 10 {
			t.Errorf("%d datagrams of 10 KB passed at once, want 10 (a burst of 100 KB)", passed)
		}
		if !l.Datagram(time.Now(), b, 10e3) {
			t.Error("another address's datagram was dropped")
		}
		time.Sleep(10 * time.Millisecond)
		if !l.Datagram(time.Now(), a, payload(10e3)) {
			t.Error("a datagram 10ms later was dropped: the bucket does not refill")
		}
	})
}

// TestAddressFlood forges datagrams from a million addresses: the buckets
// kept stay within MaxAddrs, an address known before keeps its own, and
// once the flood has passed the buckets it left are forgotten.
func TestAddressFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const most = 4096
		l := newLimiter(t, Config{PerAddr: 1e6, MaxAddrs: most})
		victim := netip.MustParseAddr("198.51.100.7")
		f := l.Open(time.Now(), victim)
		defer f.Close()
		f.Spend(time.Now(), 50e3) // half its burst
		for i := range 1 << 20 {
			a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			l.Datagram(time.Now(), a, 1000)
			if i%1024 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if n := l.Stats(time.Now()).Addresses; n > most {
			t.Errorf("%d buckets kept after the flood, want at most %d", n, most)
		}
		// The victim's bucket is its own: half full still, not shared.
		if n := f.Allow(time.Now()); n < 50e3 {
			t.Errorf("the known address may send %d bytes, want its own bucket's 50000 or more", n)
		}
		// A second later, a thousand other addresses (about 16 in each
		// shard) sweep the flood's buckets away.
		time.Sleep(time.Second)
		const later = 1024
		for i := range later {
			l.Datagram(time.Now(), netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 1000)
		}
		if n := l.Stats(time.Now()).Addresses; n > later+1 {
			t.Errorf("%d buckets kept a second after the flood, want the %d since and the victim's", n, later)
		}
	})
}

func TestEgressBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log bytes.Buffer
		budget := Budget{Bytes: 10e6, Period: time.Hour}
		l := newLimiter(t, Config{Egress: budget, Logger: slog.New(slog.NewTextHandler(&log, nil))})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go l.Run(ctx)
		f := l.Open(time.Now(), netip.MustParseAddr("192.0.2.1"))
		defer f.Close()
		addr := netip.MustParseAddr("192.0.2.9")

		for range 89 {
			// 100,000 bytes on the wire.
			if wait := f.Spend(time.Now(), payload(100e3)); wait != 0 {
				t.Fatalf("spending 89%% of the budget waits %v", wait)
			}
		}
		if st := l.Stats(time.Now()); st.Stage != StageNormal || st.Used != 8.9e6 {
			t.Fatalf("at 89%%: %+v, want normal", st)
		}
		// Past 90%, everything goes at the average rate: 10 MB an hour
		// is 2777 bytes a second, in bursts of at least 64 KiB.
		crossing := f.Spend(time.Now(), payload(100e3))
		if st := l.Stats(time.Now()); st.Stage != StageSlow {
			t.Fatalf("at 91%%: stage %v, want slow", st.Stage)
		}
		synctest.Wait() // for Run to write its line
		if !strings.Contains(log.String(), "egress budget nearly spent") {
			t.Errorf("no log line on slowing down: %q", log.String())
		}
		if wait := f.Spend(time.Now(), payload(27770)) - crossing; wait < 9900*time.Millisecond || wait > 10100*time.Millisecond {
			t.Errorf("10 seconds' worth of the average rate waits %v more, want 10s", wait)
		}
		if err := l.Admit(time.Now()); err != nil {
			t.Errorf("a session is refused while slow: %v", err)
		}
		// Spent: new sessions and datagrams are refused, with the reason.
		f.Spend(time.Now(), 1e6)
		err := l.Admit(time.Now())
		var spent *BudgetSpentError
		if !errors.As(err, &spent) || !strings.Contains(err.Error(), "egress budget of 10MB/1h0m0s spent") {
			t.Fatalf("Admit once spent = %v, want BudgetSpentError", err)
		}
		if l.Datagram(time.Now(), addr, 10) {
			t.Error("a datagram was answered once the budget was spent")
		}
		synctest.Wait() // for Run to write its line
		if !strings.Contains(log.String(), "egress budget spent") {
			t.Errorf("no log line on the budget spent: %q", log.String())
		}
		// The next period starts an hour after the first.
		time.Sleep(time.Until(spent.Renews))
		if err := l.Admit(time.Now()); err != nil {
			t.Errorf("Admit once the period renewed = %v", err)
		}
		if st := l.Stats(time.Now()); st.Stage != StageNormal || st.Used != 0 {
			t.Errorf("after renewal: %+v, want normal and nothing used", st)
		}
		if !l.Datagram(time.Now(), addr, 10) {
			t.Error("a datagram was dropped once the period renewed")
		}
		synctest.Wait() // for Run to write its line
		if !strings.Contains(log.String(), "egress budget renewed") {
			t.Errorf("no log line on renewal: %q", log.String())
		}
	})
}

func TestNewRefuses(t *testing.T) {
	for _, cfg := range []Config{
		{PerConn: -1},
		{Egress: Budget{Bytes: 1, Period: time.Second}},
	} {
		if _, err := New(time.Now(), cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// BenchmarkSpend is the cost on the hot path: one read's Allow and Spend,
// under a per-connection, a per-address and an egress budget, too large to
// ever wait.
func BenchmarkSpend(b *testing.B) {
	l, _ := New(time.Now(), Config{PerConn: 1e15, PerAddr: 1e15, Egress: Budget{Bytes: 1e18, Period: time.Hour}})
	f := l.Open(time.Now(), netip.MustParseAddr("192.0.2.1"))
	defer f.Close()
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		f.Allow(now)
		f.Spend(now, 32<<10)
	}
}

// BenchmarkDatagram is the cost per UDP reply under a per-address budget.
func BenchmarkDatagram(b *testing.B) {
	l, _ := New(time.Now(), Config{PerAddr: 1e15, Egress: Budget{Bytes: 1e18, Period: time.Hour}})
	a := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Datagram(time.Now(), a, 512)
	}
}
