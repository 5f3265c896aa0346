package echo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/echod/echod/echo/internal/epoll"
	"golang.org/x/sys/unix"
)

const eventLoopSupported = true

// eventLoop is the epoll engine (echo/internal/epoll) as the server runs it.
type eventLoop = epoll.Engine

// loopEnds names the event loop's ends in the server's vocabulary.
var loopEnds = [...]Reason{
	epoll.EOF:         endEOF,
	epoll.Reset:       endReset,
	epoll.Closed:      endClosed,
	epoll.IdleTimeout: ReasonIdleTimeout,
	epoll.MaxDuration: ReasonMaxSessionDuration,
	epoll.MaxBytes:    ReasonMaxSessionBytes,
	epoll.Failed:      endFailed,
}

// eventLoop returns the server's event loops, starting them for the first
// Serve that needs them; Shutdown and Close stop them.
func (s *Server) eventLoop() (*eventLoop, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrServerClosed
	}
	if s.loop != nil {
		return s.loop, nil
	}
	p := s.sessionPolicy()
	e, err := epoll.Start(epoll.Config{
		IdleTimeout: p.IdleTimeout,
		MaxDuration: p.MaxDuration,
		MaxBytes:    p.MaxBytes,
		Linger:      limitLinger,
		Bandwidth:   s.Bandwidth,
		Admit: func(remote netip.AddrPort) bool {
			return s.admit(remote.Addr(), nil)
		},
		OnClose: func(end epoll.Ended) {
			s.connEnded(nil, end.Remote.String, ended{
				source: end.Remote.Addr(), in: end.In, out: end.Out, duration: end.Duration,
				reason: loopEnds[end.End], err: end.Err,
			})
		},
		BytesIn:  &s.counts.tcpBytesIn,
		BytesOut: &s.counts.tcpBytesOut,
	})
	if err != nil {
		return nil, err
	}
	s.loop = e
	return e, nil
}

// serveLoop is Serve for a TCP listener whose connections the event loops
// accept and serve themselves.
func (s *Server) serveLoop(ctx context.Context, tl *net.TCPListener) error {
	served, stop := context.WithCancel(ctx)
	untrack, ok := s.trackListener(stop)
	if !ok {
		tl.Close()
		return ErrServerClosed
	}
	defer untrack()
	e, err := s.eventLoop()
	if err != nil {
		tl.Close()
		return err
	}
	// The loops accept on a duplicate of the socket, and the original
	// leaves the runtime's poller: left there, every incoming connection
	// would also wake a thread in the runtime, for nothing.
	fd, err := dupSocket(tl)
	tl.Close()
	if err != nil {
		return fmt.Errorf("serve %s: %w", tl.Addr(), err)
	}
	failed := make(chan error, 1)
	ln, err := e.Listen(fd, func(err error, pause time.Duration) bool {
		if isTemporary(err) {
			s.acceptFailed(tl.Addr(), err, pause)
			return true
		}
		// Every loop lets go of the listener on its own failure; the
		// first is the one to report.
		select {
		case failed <- err:
		default:
		}
		return false
	})
	if errors.Is(err, epoll.ErrStopped) {
		return ErrServerClosed
	} else if err != nil {
		return fmt.Errorf("serve %s: %w", tl.Addr(), err)
	}
	select {
	case <-served.Done():
		if err = ctx.Err(); err == nil {
			err = ErrServerClosed // Shutdown or Close
		}
	case err = <-failed:
		err = fmt.Errorf("accept on %s: %w", tl.Addr(), err)
	}
	ln.Close()
	<-ln.Done()
	return err
}

// dupSocket returns a duplicate of tl's socket, close-on-exec.
func dupSocket(tl *net.TCPListener) (int, error) {
	rc, err := tl.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, dupErr
}
