package bandwidth

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// addresses holds the buckets of client addresses (IPv4 addresses, IPv6
// /64s), in shards so that connections of different addresses rarely wait
// for each other's lock, which is taken only to find a bucket: when a
// connection opens, and per datagram.
//
// Memory is bounded under a flood of forged addresses: a bucket that is
// full again, with no connection holding it, is forgotten (a new one would
// be the same), and at most max buckets are kept. Past that, a new address
// shares its shard's overflow bucket with the other newcomers: stricter for
// them, never looser, and the addresses already known keep their own.
type addresses struct {
	seed   maphash.Seed
	max    int // buckets per shard
	shards [numShards]shard
}

const numShards = 64

type shard struct {
	mu       sync.Mutex
	m        map[netip.Addr]*addrBucket
	sweepAt  int   // len(m) at which the next insert sweeps
	swept    int64 // when the last sweep ran
	overflow addrBucket
}

// addrBucket is one address's bucket and the flows that hold it.
type addrBucket struct {
	bucket
	refs int // open flows, under the shard's lock
}

// minSweep is the smallest map worth sweeping, and sweepEvery how often a
// full one may be.
const (
	minSweep   = 64
	sweepEvery = int64(100 * time.Millisecond)
)

func newAddresses(maxAddrs int) *addresses {
	a := &addresses{seed: maphash.MakeSeed(), max: max(maxAddrs/numShards, 1)}
	for i := range a.shards {
		a.shards[i].sweepAt = min(minSweep, a.max)
	}
	return a
}

// Key returns what per-address limits count by: the address for IPv4, its
// /64 for IPv6, which one host or customer typically holds whole.
func Key(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		clear(b[8:])
		return netip.AddrFrom16(b)
	}
	return a
}

func (a *addresses) shard(key netip.Addr) *shard {
	b := key.As16()
	return &a.shards[maphash.Bytes(a.seed, b[:])%numShards]
}

// hold returns the bucket of key for a flow, which gives it back with
// release.
func (a *addresses) hold(key netip.Addr, now int64) *addrBucket {
	s := a.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.get(key, now, a.max)
	if b != &s.overflow {
		b.refs++
	}
	return b
}

// release gives back a bucket hold returned.
func (a *addresses) release(key netip.Addr, b *addrBucket) {
	s := a.shard(key)
	s.mu.Lock()
	if b != &s.overflow {
		b.refs--
	}
	s.mu.Unlock()
}

// trySpend charges a datagram of n bytes to key's bucket if it may go now.
func (a *addresses) trySpend(key netip.Addr, now int64, n int, p *pace) bool {
	s := a.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.m[key]; ok {
		return b.trySpend(now, n, p)
	}
	return s.get(key, now, a.max).trySpend(now, n, p)
}

// get returns key's bucket, making one if there is room; s.mu is held.
func (s *shard) get(key netip.Addr, now int64, most int) *addrBucket {
	if b, ok := s.m[key]; ok {
		return b
	}
	// Sweeping again only once the map has doubled keeps inserts O(1) on
	// average; a full map is swept at most every sweepEvery, not at every
	// insert of a flood.
	if len(s.m) >= s.sweepAt && (len(s.m) < most || now-s.swept >= sweepEvery) {
		s.sweep(now)
		s.swept = now
		s.sweepAt = min(max(2*len(s.m), minSweep), most)
	}
	if len(s.m) >= most {
		return &s.overflow
	}
	if s.m == nil {
		s.m = make(map[netip.Addr]*addrBucket)
	}
	b := new(addrBucket)
	s.m[key] = b
	return b
}

// sweep forgets the buckets no flow holds that are full again.
func (s *shard) sweep(now int64) {
	for k, b := range s.m {
		if b.refs == 0 && b.full(now) {
			delete(s.m, k)
		}
	}
}

// count returns how many buckets are kept.
func (a *addresses) count() int {
	n := 0
	for i := range a.shards {
		s := &a.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
