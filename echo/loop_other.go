//go:build !linux

package echo

import (
	"context"
	"errors"
	"net"
)

const eventLoopSupported = false

// eventLoop stands in for the epoll engine where there is none; Serve never
// starts one, since Server.engine never chooses it.
type eventLoop struct{}

func (*eventLoop) CloseAll()   {}
func (*eventLoop) SayGoodbye() {}
func (*eventLoop) Stop()       {}

func (s *Server) serveLoop(_ context.Context, tl *net.TCPListener) error {
	tl.Close()
	return errors.New("the epoll engine runs only on Linux")
}

func (s *Server) adoptLoop(_ *net.TCPConn, c *conn) error { return s.adoptGoroutine(c) }
