//go:build !linux

package echo

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

const eventLoopSupported = false

// eventLoop stands in for the epoll engine where there is none; Serve
// never gets one, because startEventLoop fails.
type eventLoop struct{}

type loopGroup struct{}

func (*loopGroup) Close() {}
func (*loopGroup) Wait()  {}

func startEventLoop(*Server) (*eventLoop, error) {
	return nil, errors.New("the epoll engine runs only on Linux")
}

func (*eventLoop) newGroup() *loopGroup { return &loopGroup{} }
func (*eventLoop) closeAll()            {}
func (*eventLoop) stop()                {}
func (*eventLoop) serve(c *net.TCPConn, _ *loopGroup) (bool, error) {
	c.Close()
	return true, errors.New("no event loop")
}

// loopListener stands in for a listener the event loops accept on.
type loopListener struct {
	net.Listener
	closed chan struct{}
}

func newLoopListener(l *net.TCPListener) *loopListener {
	return &loopListener{Listener: l, closed: make(chan struct{})}
}

func (*loopListener) start(*eventLoop, *loopGroup, func(netip.AddrPort) bool, func(error, time.Duration) bool) error {
	return errors.New("no event loop")
}

func (*loopListener) done() <-chan struct{} { return nil }
func (*loopListener) fail(error)            {}
func (*loopListener) failure() error        { return nil }
