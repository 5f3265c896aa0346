//go:build !linux

package echo

import (
	"errors"
	"net"
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
