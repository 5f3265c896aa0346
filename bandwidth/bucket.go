package bandwidth

import (
	"math"
	"sync/atomic"
)

// bucket is a token bucket kept as one word, so that connections sharing
// it spend from it without a lock: the generic cell rate algorithm (GCRA,
// as in ATM networks and most rate limiters since). Instead of a count of
// tokens it holds tat, the time at which the bucket will be full again if
// nothing more is spent; spending n bytes pushes tat n byte-times into the
// future, and bytes may go once tat is less than a burst ahead of now.
//
// Times are nanoseconds on the Limiter's clock. The zero bucket is full.
type bucket struct {
	tat atomic.Int64
}

// pace is a rate as a bucket applies it.
type pace struct {
	perByte float64 // nanoseconds per byte: the rate's inverse
	burst   int64   // nanoseconds of credit: the burst's bytes times perByte
}

// burstTime is how much a bucket lets go at once, as time at its rate: a
// burst of a tenth of a second is invisible to people and to TCP, and keeps
// what one window of measurement can see close to the rate itself.
const burstTime = 0.1

// minBurst is the least burst, in bytes: one read of the echo engines (32
// KiB) and the largest UDP datagram (64 KiB) always fit.
const minBurst = 64 << 10

func newPace(r Rate) pace {
	perByte := 1e9 / float64(r)
	burst := max(burstTime*float64(r), minBurst) * perByte
	return pace{perByte: perByte, burst: int64(burst)}
}

// cost is what n bytes take from a bucket.
func (p *pace) cost(n int) int64 { return int64(math.Ceil(float64(n) * p.perByte)) }

// spend charges n bytes, whether or not the bucket has them, and returns
// how long the caller must wait before sending them: zero when they fit in
// the burst. Charging first and waiting after is what keeps the rate exact
// when several connections of one address spend at once.
func (b *bucket) spend(now int64, n int, p *pace) (wait int64) {
	c := p.cost(n)
	for {
		old := b.tat.Load()
		next := max(old, now) + c
		if b.tat.CompareAndSwap(old, next) {
			return max(0, next-p.burst-now)
		}
	}
}

// trySpend charges n bytes only if they may go now, for a datagram, which
// is sent at once or not at all.
func (b *bucket) trySpend(now int64, n int, p *pace) bool {
	c := p.cost(n)
	for {
		old := b.tat.Load()
		next := max(old, now) + c
		if next-p.burst > now {
			return false
		}
		if b.tat.CompareAndSwap(old, next) {
			return true
		}
	}
}

// allow returns how many bytes may go now without waiting: none while the
// bucket is in debt. It spends nothing.
func (b *bucket) allow(now int64, p *pace) int {
	credit := now + p.burst - max(b.tat.Load(), now)
	return int(min(max(float64(credit)/p.perByte, 0), math.MaxInt32))
}

// full reports whether the bucket is full at now: it then holds nothing a
// new bucket would not, and may be forgotten.
func (b *bucket) full(now int64) bool { return b.tat.Load() <= now }
