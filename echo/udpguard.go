package echo

import (
	"encoding/binary"
	"hash/maphash"
	"maps"
	"math"
	"math/bits"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/echod/echod/bandwidth"
)

// udpGuard decides which datagrams get a reply: the source check, the
// reflection guard, the per-source rate, then the global rate. One guard
// serves every UDP socket of a Server, so a source's budget is the same
// however many addresses it sends to. With no rate set it takes no lock.
type udpGuard struct {
	allowPrivileged bool
	localPorts      atomic.Pointer[map[uint16]bool] // the server's; replaced whole, read without a lock
	sourceRate      float64                         // replies per second per source; 0: no limit
	globalRate      float64                         // replies per second in all; 0: no limit
	bandwidth       *bandwidth.Limiter              // the server's; nil: no limit

	start time.Time // the guard's clock starts here, so it is monotonic

	replies replyLog
	global  tokenBucket
	sources [sourceBuckets]tokenBucket
}

// sourceBuckets is how many per-source token buckets a server keeps.
// Sources are hashed onto them with a random seed: memory stays fixed
// however many addresses a flood forges, and two sources that collide share
// a budget (the stricter outcome).
const sourceBuckets = 4096

func newUDPGuard(s *Server) *udpGuard {
	g := &udpGuard{
		allowPrivileged: s.UDPAllowPrivilegedPorts,
		sourceRate:      float64(s.UDPSourceRate),
		globalRate:      float64(s.UDPGlobalRate),
		bandwidth:       s.Bandwidth,
		start:           time.Now(),
	}
	g.localPorts.Store(&map[uint16]bool{})
	g.replies.seed = maphash.MakeSeed()
	return g
}

// addLocalPort records the port of one more socket, under the server's
// lock (so two calls never race), before that socket's readers start.
func (g *udpGuard) addLocalPort(pc net.PacketConn) {
	ua, ok := pc.LocalAddr().(*net.UDPAddr)
	if !ok {
		return
	}
	ports := maps.Clone(*g.localPorts.Load())
	ports[uint16(ua.Port)] = true
	g.localPorts.Store(&ports)
}

// now is the guard's clock, read once per datagram or batch of them.
func (g *udpGuard) now() time.Duration { return time.Since(g.start) }

// admit reports whether the datagram p from src, which arrived at now,
// gets a reply, and if not, why; if so, the reply log remembers it.
func (g *udpGuard) admit(src netip.AddrPort, p []byte, now time.Duration) (Reason, bool) {
	if r, ok := checkSource(src, g.allowPrivileged, *g.localPorts.Load()); !ok {
		return r, false
	}
	slot, entry, ok := g.replies.admit(g.replies.fingerprint(src, p), ticks(now))
	if !ok {
		return ReasonUDPLoop, false
	}
	if g.sourceRate > 0 {
		key := bandwidth.Key(src.Addr()).As16()
		if !g.sources[maphash.Bytes(g.replies.seed, key[:])%sourceBuckets].take(now, g.sourceRate) {
			return ReasonUDPRateLimit, false
		}
	}
	if g.globalRate > 0 && !g.global.take(now, g.globalRate) {
		return ReasonUDPGlobalCap, false
	}
	if g.bandwidth != nil {
		// Last, as it counts what it lets through.
		if t := g.start.Add(now); !g.bandwidth.Datagram(t, src.Addr(), len(p)) {
			if g.bandwidth.Spent(t) {
				return ReasonEgressBudget, false
			}
			return ReasonUDPBandwidth, false
		}
	}
	slot.Store(entry)
	return 0, true
}

// checkSource is the source half of the loop guard. A reply to a privileged
// port may land on another host's echo, chargen or daytime service, which
// answers back, and the two loop forever (CVE-1999-0103, the 2024 "Loop
// DoS"); a reply to the server's own port, on an echo server like this one;
// multicast, broadcast, unspecified and reserved addresses are never a real
// sender, but are how floods get amplified.
func checkSource(src netip.AddrPort, allowPrivileged bool, localPorts map[uint16]bool) (Reason, bool) {
	a := src.Addr().Unmap()
	switch {
	case !a.IsValid(), src.Port() == 0, a.IsUnspecified(), a.IsMulticast():
		return ReasonUDPBadSource, false
	case a.Is4() && (a.As4()[0] == 0 || a.As4()[0] >= 240):
		// 0.0.0.0/8 is "this network", 240.0.0.0/4 is reserved and holds
		// the limited broadcast 255.255.255.255.
		return ReasonUDPBadSource, false
	case localPorts[src.Port()]:
		return ReasonUDPLoop, false
	case src.Port() < 1024 && !allowPrivileged:
		return ReasonUDPPrivilegedPort, false
	}
	return 0, true
}

// replyLog is the reflection half of the loop guard. Another echo service,
// on any port, answers a reply with the very same bytes, straight back. So
// the log remembers a fingerprint (destination and bytes) of each reply sent
// lately, and a datagram that brings back, too soon, the bytes last sent to
// its source gets no answer: one drop ends a loop.
//
// Too soon is reflectWindow after the last answer, doubled each time the
// same bytes from the same source are answered again, up to
// maxReflectWindow (a loop through a slow peer is dropped a few rounds
// later); after forgetAfter it starts over. A slower loop is left to the
// rate limits, and a client repeating the same bytes from one port more
// often is answered about once per maxReflectWindow.
//
// The log is a fixed table of atomic words, so memory is fixed and readers
// take no lock. A fingerprint has a set of replyLogWays places, and a new
// one replaces the entry answered longest ago: loops whose fingerprints
// share a set each keep their entry (with one place each, two would
// overwrite each other's at every round and never die), until a flood of
// more than the log holds, which the rate limits are for. A false match
// needs 36 more bits to agree.
type replyLog struct {
	seed maphash.Seed
	sets [replyLogSize / replyLogWays][replyLogWays]atomic.Uint64
}

const (
	// fingerprintSample is how many bytes from each end of a long
	// datagram its fingerprint covers.
	fingerprintSample = 1 << 10

	// replyLogSize is how many replies the log holds at most (8 bytes
	// each), replyLogWays of them in each set.
	replyLogSize = 1 << 16
	replyLogWays = 4

	// reflectWindow is longer than the round trip to most hosts (the
	// doubling catches the rest, such as satellite paths), and shorter than
	// the pause between identical probes of a tool (typically a second).
	reflectWindow    = 250 * time.Millisecond
	maxReflectWindow = 2 * time.Second
	forgetAfter      = 2 * maxReflectWindow

	// An entry is a 36-bit tag (the top of the fingerprint; the bottom
	// is the index), the tick of the last answer, and the level (how
	// many times the window has doubled).
	levelBits = 4
	tickBits  = 24
	tagShift  = tickBits + levelBits
	tickMask  = 1<<tickBits - 1
	levelMask = 1<<levelBits - 1
	// A tick is 2^24 ns (16.8 ms); they wrap after 2^48 ns (78 hours),
	// when an entry of the same bytes that long ago looks recent.
	tickShift = 24
)

// ticks is a time on the guard's clock in the log's units, rounded down.
func ticks(d time.Duration) uint64 { return uint64(d) >> tickShift }

// windowTicks is the window at level k, rounded up to whole ticks.
func windowTicks(k uint64) uint64 {
	w := ticks(reflectWindow+1<<tickShift-1) << k
	return min(w, ticks(maxReflectWindow+1<<tickShift-1))
}

// fingerprint identifies the datagram p to or from src, however the IPv4
// source arrived. Of a datagram longer than 2*fingerprintSample bytes only
// the first and the last fingerprintSample count, with its length, to bound
// the hashing: a reflection brings back every byte anyway.
func (l *replyLog) fingerprint(src netip.AddrPort, p []byte) uint64 {
	var key [26]byte
	a := src.Addr().Unmap().As16()
	copy(key[:], a[:])
	binary.BigEndian.PutUint16(key[16:], src.Port())
	binary.BigEndian.PutUint64(key[18:], uint64(len(p)))
	h := maphash.Bytes(l.seed, key[:])
	if len(p) > 2*fingerprintSample {
		h ^= bits.RotateLeft64(maphash.Bytes(l.seed, p[len(p)-fingerprintSample:]), 17)
		p = p[:fingerprintSample]
	}
	return h ^ bits.RotateLeft64(maphash.Bytes(l.seed, p), 32)
}

// admit reports whether a datagram with fingerprint f, arriving at tick
// now, may be answered; if so, storing entry in slot records the answer
// (the caller's, which may yet refuse the datagram).
func (l *replyLog) admit(f, now uint64) (slot *atomic.Uint64, entry uint64, ok bool) {
	set := &l.sets[f%uint64(len(l.sets))]
	// Bit tagShift is set, so no entry is 0, which an unused slot is.
	tag := f&^(1<<tagShift-1) | 1<<tagShift
	var oldest uint64
	for i := range set {
		old := set[i].Load()
		age := (now - old>>levelBits) & tickMask
		if old&^(1<<tagShift-1) == tag {
			k := old & levelMask
			if age < windowTicks(k) {
				return nil, 0, false
			}
			level := uint64(0)
			if age < ticks(forgetAfter) {
				level = min(k+1, levelMask)
			}
			return &set[i], tag | (now&tickMask)<<levelBits | level, true
		}
		if old == 0 {
			age = math.MaxUint64
		}
		if slot == nil || age > oldest {
			slot, oldest = &set[i], age
		}
	}
	return slot, tag | (now&tickMask)<<levelBits, true
}

// tokenBucket is a rate limiter whose budget refills continuously at a rate
// per second up to one second's worth (at least one token). Its zero value
// is full.
type tokenBucket struct {
	mu   sync.Mutex
	used float64       // tokens spent and not refilled yet
	last time.Duration // the clock at the last refill
}

// take spends one token if there is one, refilling first for the time since
// the last call.
func (b *tokenBucket) take(now time.Duration, rate float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used = max(0, b.used-(now-b.last).Seconds()*rate)
	b.last = now
	if b.used+1 > max(rate, 1) {
		return false
	}
	b.used++
	return true
}
