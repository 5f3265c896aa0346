package echo

import (
	"net"
	"time"

	"github.com/echod/echod/internal/mmsg"
)

// udpBatchSize is how many datagrams one recvmmsg takes and one sendmmsg
// answers: 16 already divides the system calls, the cost under load, by
// more than ten, and each slot holds 64 KiB.
const udpBatchSize = 16

// echoUDP is one reader of pc (see echoDatagrams). A *net.UDPConn is read
// and answered in batches; anything else one datagram at a time.
func (s *Server) echoUDP(pc net.PacketConn, g *udpGuard, dest bool) error {
	if uc, ok := pc.(*net.UDPConn); ok {
		control := 0
		if dest {
			control = oobSize
		}
		if b, err := mmsg.NewBatch(uc, udpBatchSize, udpBufferSize, control); err == nil {
			return s.echoBatches(b, g, dest)
		}
	}
	return s.echoDatagrams(pc, g, dest)
}

// echoBatches is echoDatagrams with up to udpBatchSize datagrams read by
// one recvmmsg and answered by one sendmmsg.
func (s *Server) echoBatches(b *mmsg.Batch, g *udpGuard, dest bool) error {
	var pause time.Duration
	for {
		n, err := b.Read()
		if err != nil {
			if err := readFailed(err, &pause); err != nil {
				return err
			}
			continue
		}
		pause = 0
		var bytesIn uint64
		for i := range n {
			_, size := b.Datagram(i)
			bytesIn += uint64(size)
		}
		s.counts.udpDatagrams.Add(uint64(n))
		s.counts.udpBytesIn.Add(bytesIn)
		now := g.now()
		for i := range n {
			if dest && !unicastDest(b.Control(i)) {
				s.limited(ReasonUDPBadDestination)
				continue
			}
			p, _ := b.Datagram(i)
			if r, ok := g.admit(b.Source(i), p, now); !ok {
				s.limited(r)
				continue
			}
			b.Reply(i)
		}
		// A refused reply is its sender's loss alone, as in echoDatagrams;
		// a closed socket shows in the next Read.
		replies, bytesOut, _ := b.Flush()
		if replies > 0 {
			s.counts.udpReplies.Add(uint64(replies))
			s.counts.udpBytesOut.Add(bytesOut)
		}
	}
}
