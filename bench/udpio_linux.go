package bench

import (
	"net"

	"github.com/echod/echod/internal/mmsg"
)

// udpBatchMax is the most datagrams one recvmmsg or sendmmsg moves. The
// load generator must not be what limits a batching server, so it batches
// too.
const udpBatchMax = 16

// udpIO moves datagrams on a connected UDP socket, on Linux up to
// udpBatchMax per system call: read takes what has arrived, write queues
// and flush sends what was queued.
type udpIO struct {
	b *mmsg.Batch
}

func newUDPIO(c *net.UDPConn, size, depth int) (*udpIO, error) {
	// One byte more than was sent, so a longer echo shows as truncated.
	b, err := mmsg.NewBatch(c, min(depth, udpBatchMax), size+1, 0)
	if err != nil {
		return nil, err
	}
	return &udpIO{b: b}, nil
}

// read waits for echoes (and the socket's read deadline) and returns how
// many it took.
func (u *udpIO) read() (int, error) { return u.b.Read() }

// datagram returns the i-th echo read (at most size+1 bytes of it) and its
// length in full.
func (u *udpIO) datagram(i int) ([]byte, int) { return u.b.Datagram(i) }

// write queues p, which must stay unchanged until flush, and sends the
// queue if it is full.
func (u *udpIO) write(p []byte) error {
	u.b.Queue(p)
	if u.b.Queued() == u.b.Slots() {
		return u.flush()
	}
	return nil
}

// flush sends every queued datagram.
func (u *udpIO) flush() error {
	_, _, err := u.b.Flush()
	return err
}
