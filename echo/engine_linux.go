package echo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/echod/echod/echo/internal/epoll"
	"golang.org/x/sys/unix"
)

const eventLoopSupported = true

// eventLoop is the epoll engine as the server drives it.
type eventLoop struct {
	e *epoll.Engine
}

// loopGroup is the set of a Serve call's connections in the event loop.
type loopGroup = epoll.Group

func startEventLoop(s *Server) (*eventLoop, error) {
	p := s.sessionPolicy()
	e, err := epoll.Start(epoll.Config{
		IdleTimeout: p.IdleTimeout,
		MaxDuration: p.MaxDuration,
		MaxBytes:    p.MaxBytes,
		Linger:      limitLinger,
		OnClose: func(end epoll.Ended) {
			if r, ok := loopLimit(end.Reason); ok {
				s.limited(r)
			}
			s.loopConnEnded(end.Remote)
			log := s.logger()
			if !log.Enabled(context.Background(), slog.LevelDebug) {
				return
			}
			log.Debug("connection closed",
				"remote", end.Remote.String(),
				"bytes_in", end.In,
				"bytes_out", end.Out,
				"duration", end.Duration,
				"reason", loopEndReason(end))
		},
		BytesIn:  &s.counts.tcpBytesIn,
		BytesOut: &s.counts.tcpBytesOut,
	})
	if err != nil {
		return nil, err
	}
	return &eventLoop{e: e}, nil
}

func (l *eventLoop) newGroup() *loopGroup { return l.e.NewGroup() }
func (l *eventLoop) closeAll()            { l.e.CloseAll() }
func (l *eventLoop) stop()                { l.e.Stop() }

// serve takes c's socket out of Go's poller into the event loop: it
// duplicates the descriptor, closes c (which removes it from Go's poller
// while the socket stays open through the duplicate) and hands the
// duplicate over. taken reports whether c is now the loop's (and closed
// here): it is not when the descriptor could not be duplicated, as when
// the process is out of them, and c is then left open for the caller.
func (l *eventLoop) serve(c *net.TCPConn, g *loopGroup) (taken bool, err error) {
	var remote netip.AddrPort
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return true, fmt.Errorf("take socket: %w", err)
	}
	fd, dupErr := -1, error(nil)
	err = rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil && dupErr != nil {
		return false, fmt.Errorf("take socket: %w", dupErr)
	}
	c.Close()
	if err != nil {
		return true, fmt.Errorf("take socket: %w", err)
	}
	return true, l.e.Add(fd, remote, g)
}

// loopListener is a TCP listener whose connections the event loops accept
// on a duplicate of its socket. Closing it closes both.
type loopListener struct {
	net.Listener
	closed chan struct{} // closed by Close

	mu     sync.Mutex
	isShut bool
	ln     *epoll.Listener
	err    error // why accepting stopped, if it failed
}

func newLoopListener(l *net.TCPListener) *loopListener {
	return &loopListener{Listener: l, closed: make(chan struct{})}
}

// start duplicates the listening socket and hands the duplicate to the
// event loop, whose loops accept on it from now on.
func (a *loopListener) start(loop *eventLoop, g *loopGroup, admit func(netip.AddrPort) bool, failed func(error, time.Duration) bool) error {
	rc, err := a.Listener.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if dupErr != nil {
		return fmt.Errorf("duplicate listening socket: %w", dupErr)
	}
	// The original leaves the runtime's poller now: left there, every
	// incoming connection would also wake a thread in the runtime, for
	// nothing. The duplicate keeps the socket listening.
	a.Listener.Close()
	ln, err := loop.e.Listen(fd, g, epoll.ListenConfig{Admit: admit, AcceptFailed: failed})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ln = ln
	if a.isShut {
		ln.Close()
	}
	return nil
}

// Close stops the loops accepting and closes the listener.
func (a *loopListener) Close() error {
	a.mu.Lock()
	if !a.isShut {
		a.isShut = true
		close(a.closed)
		if a.ln != nil {
			a.ln.Close()
		}
	}
	a.mu.Unlock()
	return a.Listener.Close()
}

// done is closed once the loops have let go of the duplicate socket.
func (a *loopListener) done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return a.ln.Done()
}

// fail records why accepting stopped and closes a.
func (a *loopListener) fail(err error) {
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
	a.Close()
}

func (a *loopListener) failure() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// loopEndReason names why a connection in the event loop ended, in the
// words endReason uses for the goroutine engine.
func loopEndReason(end epoll.Ended) string {
	switch end.Reason {
	case epoll.EOF:
		return "eof"
	case epoll.Reset:
		return "reset by client"
	case epoll.ClosedByServer:
		return "closed by server"
	case epoll.IdleTimeout, epoll.MaxDuration, epoll.MaxBytes:
		r, _ := loopLimit(end.Reason)
		return r.String()
	default:
		if end.Err != nil {
			return end.Err.Error()
		}
		return "failed"
	}
}

// loopLimit returns the Reason for a connection the event loop ended because
// of a session limit.
func loopLimit(r epoll.Reason) (Reason, bool) {
	switch r {
	case epoll.IdleTimeout:
		return ReasonIdleTimeout, true
	case epoll.MaxDuration:
		return ReasonMaxSessionDuration, true
	case epoll.MaxBytes:
		return ReasonMaxSessionBytes, true
	default:
		return 0, false
	}
}
