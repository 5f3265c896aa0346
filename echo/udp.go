package echo

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// udpBufferSize holds the largest UDP payload there is (65507 bytes over
// IPv4, 65527 over IPv6), so no datagram is ever truncated.
const udpBufferSize = 64 << 10

// ServeUDP echoes every datagram that arrives on pc back to its sender, once
// and unchanged, from 0 bytes up to the largest the socket allows. Datagrams
// that the loop guard or the UDP rate limits refuse are dropped and counted
// (see Stats); on Linux so are those sent to a broadcast or multicast
// address rather than to one of this host's own. pc is normally a *net.UDPConn, which is served without an
// allocation per datagram; with any other net.PacketConn, datagrams whose
// source is not a UDP address are dropped.
//
// Like Serve, ServeUDP returns ErrServerClosed after Shutdown or Close, and
// ctx.Err() once ctx is done; it always closes pc before returning. Several
// goroutines read pc at once so that one core's worth of work is not the
// limit; ServeUDP waits for all of them.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	// Where the kernel can say where each datagram was sent, those sent to
	// a broadcast or multicast address are refused. Datagrams queued
	// before this carry no such information, so it comes first.
	var dest bool
	if uc, ok := pc.(*net.UDPConn); ok && destSupported {
		dest = enableDest(uc)
	}
	g, ok := s.trackPacket(pc)
	if !ok {
		pc.Close()
		return ErrServerClosed
	}
	defer s.untrackPacket(pc)
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	readers := min(runtime.GOMAXPROCS(0), 4)
	errc := make(chan error, readers)
	var wg sync.WaitGroup
	for range readers {
		if !s.addGoroutine() {
			break
		}
		wg.Go(func() {
			defer s.wg.Done()
			err := s.echoUDP(pc, g, dest)
			// One reader failing for good stops the others.
			pc.Close()
			errc <- err
		})
	}
	wg.Wait()
	close(errc)

	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case s.isClosing():
		return ErrServerClosed
	}
	for err := range errc {
		if err != nil {
			return fmt.Errorf("read on %s: %w", pc.LocalAddr(), err)
		}
	}
	return ErrServerClosed
}

// echoDatagrams is one reader of pc: it returns only when reading fails for
// good, including because pc was closed. With dest, pc is a *net.UDPConn
// that reports each datagram's destination (see enableDest).
func (s *Server) echoDatagrams(pc net.PacketConn, g *udpGuard, dest bool) error {
	buf := new([udpBufferSize]byte)
	var oob [oobSize]byte
	uc, fast := pc.(*net.UDPConn)
	var backoff time.Duration
	for {
		var n, oobn int
		var src netip.AddrPort
		var addr net.Addr
		var err error
		if dest {
			n, oobn, _, src, err = uc.ReadMsgUDPAddrPort(buf[:], oob[:])
		} else if fast {
			// The AddrPort methods neither allocate nor box the address.
			n, src, err = uc.ReadFromUDPAddrPort(buf[:])
		} else {
			n, addr, err = pc.ReadFrom(buf[:])
			if ua, ok := addr.(*net.UDPAddr); ok {
				src = ua.AddrPort()
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || !isTemporary(err) {
				return err
			}
			// A shortage of buffers or memory passes; don't spin on it.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.counts.udpDatagrams.Add(1)
		s.counts.udpBytesIn.Add(uint64(n))
		if dest && !unicastDest(oob[:oobn]) {
			s.limited(ReasonUDPBadDestination)
			continue
		}
		if r, ok := g.admit(src); !ok {
			s.limited(r)
			continue
		}
		// A failed reply (no route, a firewall, a full send buffer) is the
		// sender's loss alone; UDP promises nothing, and the server goes on.
		if fast {
			_, err = uc.WriteToUDPAddrPort(buf[:n], src)
		} else {
			_, err = pc.WriteTo(buf[:n], addr)
		}
		if err == nil {
			s.counts.udpReplies.Add(1)
			s.counts.udpBytesOut.Add(uint64(n))
		}
	}
}

// udpGuard decides which datagrams get a reply: the loop guard, then the
// per-source rate limit, then the global cap. One guard serves every UDP
// socket of a Server, so a source's budget is the same however many
// addresses it sends to.
type udpGuard struct {
	allowPrivileged bool
	localPorts      map[uint16]bool // the ports of the server's UDP sockets; read-only after start
	sourceRate      float64         // replies per second per source; 0: no limit
	globalRate      float64         // replies per second in all; 0: no limit

	seed  maphash.Seed
	start time.Time // the buckets' clock starts here, so it is monotonic

	mu      sync.Mutex
	global  tokenBucket
	sources [sourceBuckets]tokenBucket
}

// sourceBuckets is how many per-source token buckets a server keeps. Sources
// are hashed onto them with a random seed: memory stays fixed however many
// addresses a flood forges, at the price that two sources which collide share
// a budget (the stricter outcome).
const sourceBuckets = 4096

func newUDPGuard(s *Server) *udpGuard {
	g := &udpGuard{
		allowPrivileged: s.UDPAllowPrivilegedPorts,
		localPorts:      make(map[uint16]bool),
		sourceRate:      float64(s.UDPSourceRate),
		globalRate:      float64(s.UDPGlobalRate),
		seed:            maphash.MakeSeed(),
		start:           time.Now(),
	}
	g.global.fill(g.globalRate)
	for i := range g.sources {
		g.sources[i].fill(g.sourceRate)
	}
	return g
}

// addLocalPort records the port of one more socket the guard serves. It is
// called under the server's lock before that socket's readers start.
func (g *udpGuard) addLocalPort(pc net.PacketConn) {
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		g.mu.Lock()
		g.localPorts[uint16(ua.Port)] = true
		g.mu.Unlock()
	}
}

// admit reports whether a datagram from src gets a reply, and if not, why.
func (g *udpGuard) admit(src netip.AddrPort) (Reason, bool) {
	if g.sourceRate == 0 && g.globalRate == 0 {
		g.mu.Lock()
		r, ok := checkSource(src, g.allowPrivileged, g.localPorts)
		g.mu.Unlock()
		return r, ok
	}
	now := time.Since(g.start)
	g.mu.Lock()
	defer g.mu.Unlock()
	if r, ok := checkSource(src, g.allowPrivileged, g.localPorts); !ok {
		return r, false
	}
	if g.sourceRate > 0 {
		key := sourceKey(src.Addr()).As16()
		b := &g.sources[maphash.Bytes(g.seed, key[:])%sourceBuckets]
		if !b.take(now, g.sourceRate) {
			return ReasonUDPRateLimit, false
		}
	}
	if g.globalRate > 0 && !g.global.take(now, g.globalRate) {
		return ReasonUDPGlobalCap, false
	}
	return 0, true
}

// checkSource is the loop and reflection guard: it refuses datagrams that
// no echo server should answer. A reply to a privileged port may land on
// another host's echo, chargen or daytime service, which answers back, and
// the two then loop forever (CVE-1999-0103, and the 2024 "Loop DoS"); a
// reply to the server's own port may land on another echo server like this
// one; multicast, broadcast, unspecified and reserved addresses are never a
// real sender but are how floods get amplified.
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

// tokenBucket is a rate limiter whose budget refills continuously at a rate
// per second up to one second's worth. It has no lock of its own.
type tokenBucket struct {
	tokens float64
	last   time.Duration // the clock at the last refill
}

func (b *tokenBucket) fill(rate float64) { b.tokens = max(rate, 1) }

// take spends one token if there is one, refilling first for the time since
// the last call.
func (b *tokenBucket) take(now time.Duration, rate float64) bool {
	burst := max(rate, 1)
	b.tokens = min(burst, b.tokens+(now-b.last).Seconds()*rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
