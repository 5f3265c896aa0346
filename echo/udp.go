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
// and unchanged, from 0 bytes up to the largest the socket allows. Datagrams
// that the loop guard or the UDP rate limits refuse are dropped and counted
// (see Stats); on Linux so are those sent to a broadcast or multicast
// address rather than to one of this host's own. The loop guard drops,
// besides datagrams from sources no reply should go to, those that bring
// back the bytes the server just sent their source, which is what another
// echo service does (see replyLog). pc is normally a *net.UDPConn, which is
// served without an allocation per datagram; with any other
// net.PacketConn, datagrams whose source is not a UDP address are dropped.
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
