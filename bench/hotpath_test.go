package bench

import (
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// The load generator's own per-message costs: if these grow, bench measures
// itself rather than the server.

func BenchmarkLatencyRecord(b *testing.B) {
	l := newLatencies()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.record(i, time.Duration(i%100_000)*time.Nanosecond)
	}
}

func BenchmarkLatencyRecordParallel(b *testing.B) {
	l := newLatencies()
	b.ReportAllocs()
	b.ResetTimer() // the histograms made above are not per record
	b.RunParallel(func(pb *testing.PB) {
		w := 0
		for pb.Next() {
			w++
			l.record(w, 30*time.Microsecond)
		}
	})
}

// BenchmarkVerifyMessage is what ping-pong does per 512-byte message besides
// the system calls: make the next message and compare its echo.
func BenchmarkVerifyMessage(b *testing.B) {
	src := pattern.NewStream(1)
	msg := make([]byte, 512)
	got := make([]byte, 512)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		src.Read(msg)
		copy(got, msg)
		if pattern.FirstDiff(got, msg) >= 0 {
			b.Fatal("differs")
		}
	}
}

// BenchmarkVerifyBulk is bulk mode's check per 64 KiB read.
func BenchmarkVerifyBulk(b *testing.B) {
	p := newBulkPattern(bulkRead, false)
	buf := make([]byte, bulkRead)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	off := 12345
	for b.Loop() {
		copy(buf, p[off:])
		if pattern.FirstDiff(buf, p[off:off+len(buf)]) >= 0 {
			b.Fatal("differs")
		}
		off = (off + len(buf)) % bulkPeriod
	}
}

// BenchmarkLatencyRecordWhileFlushing records from every CPU while the
// histograms are cut a thousand times more often than a run cuts them
// (once a second): the swap under each shard's lock must not slow the
// recording down.
func BenchmarkLatencyRecordWhileFlushing(b *testing.B) {
	l := newLatencies()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				l.flush()
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := 0
		for pb.Next() {
			w++
			l.record(w, 30*time.Microsecond)
		}
	})
	b.StopTimer()
	close(stop)
	<-done
}
