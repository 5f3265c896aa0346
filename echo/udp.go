package echo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/echod/echod/echo/internal/backoff"
)

// udpBufferSize holds the largest UDP payload there is (65507 bytes over
// IPv4, 65527 over IPv6), so no datagram is ever truncated.
const udpBufferSize = 64 << 10

// ServeUDP echoes every datagram that arrives on pc back to its sender, once
// and unchanged, whatever its size. The UDP rate limits and the loop guard
// drop, and count in Stats, datagrams over a rate; from multicast,
// broadcast, unspecified or non-UDP addresses, from port 0, from ports
// below 1024 (unless UDPAllowPrivilegedPorts) or the server's own; sent to
// a broadcast or multicast address (on Linux, which reports it); or that
// bring back, too soon, the bytes the server last sent their source:
// another echo service, on any port, answering. A *net.UDPConn is served
// without an allocation per datagram. Like Serve, ServeUDP returns
// ErrServerClosed after Shutdown or Close, or ctx.Err(), and always closes pc.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	// Datagrams queued before this carry no destination, so it comes first.
	var dest bool
	if uc, ok := pc.(*net.UDPConn); ok {
		dest = enableDest(uc)
	}
	untrack, ok := s.trackListener(func() { pc.Close() })
	if !ok {
		return ErrServerClosed
	}
	defer untrack()
	g := s.guardUDP(pc)
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	readers := min(runtime.GOMAXPROCS(0), 4)
	errc := make(chan error, readers)
	var wg sync.WaitGroup
	for range readers {
		if !s.addGoroutine() {
			break
		}
		// Several readers, so that one core's worth is not the limit.
		wg.Go(func() {
			defer s.wg.Done()
			err := s.echoUDP(pc, g, dest)
			pc.Close() // one reader failing for good stops the others
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

// echoDatagrams is one reader of pc, until reading fails for good (pc was
// closed). With dest, pc reports each datagram's destination (enableDest).
func (s *Server) echoDatagrams(pc net.PacketConn, g *udpGuard, dest bool) error {
	buf := new([udpBufferSize]byte)
	var oob [oobSize]byte
	uc, fast := pc.(*net.UDPConn)
	var pause time.Duration
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
			if err := readFailed(err, &pause); err != nil {
				return err
			}
			continue
		}
		pause = 0
		s.counts.udpDatagrams.Add(1)
		s.counts.udpBytesIn.Add(uint64(n))
		if dest && !unicastDest(oob[:oobn]) {
			s.limited(ReasonUDPBadDestination)
			continue
		}
		if r, ok := g.admit(src, buf[:n], g.now()); !ok {
			s.limited(r)
			continue
		}
		// A failed reply (no route, a full send buffer) is the sender's
		// loss alone; UDP promises nothing.
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

// readFailed returns err if reading a UDP socket failed for good, such as
// because it was closed. A shortage of buffers or memory passes: it pauses
// rather than spin, longer while the failures last, and returns nil.
func readFailed(err error, pause *time.Duration) error {
	if errors.Is(err, net.ErrClosed) || !isTemporary(err) {
		return err
	}
	*pause = backoff.Next(*pause)
	time.Sleep(*pause)
	return nil
}
