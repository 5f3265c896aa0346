package echo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/echod/echod/echo/internal/epoll"
	"github.com/echod/echod/echo/internal/session"
	"golang.org/x/sys/unix"
)

const eventLoopSupported = true

// eventLoop is the epoll engine (echo/internal/epoll) as the server runs
// it: the loops do the I/O and the policy's bidding, count each end as it
// comes without the server's mutex, and hand the ends to log to a
// goroutine of the server's (countEnds).
type eventLoop struct {
	e    *epoll.Engine
	stop chan struct{} // closed once the loops have stopped
	done chan struct{} // closed by countEnds once every end is counted
}

// eventLoop returns the server's event loops, starting them for the first
// Serve or Adopt that needs them; Shutdown and Close stop them.
func (s *Server) eventLoop() (*eventLoop, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrServerClosed
	}
	if s.loop != nil {
		return s.loop, nil
	}
	e, err := epoll.Start(epoll.Config{
		Policy:    s.policy(),
		Bandwidth: s.Bandwidth,
		Admit: func(remote netip.AddrPort) bool {
			return s.admit(remote.Addr(), nil)
		},
		Closed: func(end epoll.Ended) bool {
			s.countEnd(end.Remote.Addr().Unmap(), reasonOf(end.End), true)
			if s.logsEnds() {
				return true // countEnds logs it, then calls closed
			}
			s.closed()
			return false
		},
		BytesIn:  &s.counts.tcpBytesIn,
		BytesOut: &s.counts.tcpBytesOut,
	})
	if err != nil {
		return nil, err
	}
	s.loop = &eventLoop{e: e, stop: make(chan struct{}), done: make(chan struct{})}
	go s.countEnds(s.loop)
	return s.loop, nil
}

// countEnds logs the ends of the connections the loops closed (only when
// connection ends are logged: Config.Closed counted them already), until
// the loops have stopped and their last ends are in.
func (s *Server) countEnds(l *eventLoop) {
	defer close(l.done)
	var batch []epoll.Ended
	for stopped := false; !stopped; {
		select {
		case <-l.e.Ended():
		case <-l.stop:
			stopped = true
		}
		batch = l.e.TakeEnded(batch[:0])
		for _, end := range batch {
			s.logEnd(end.Remote.String, ended{
				in: end.In, out: end.Out, duration: end.Duration,
				reason: reasonOf(end.End), err: end.Err,
			})
			s.closed()
		}
	}
}

// CloseAll closes every connection in the loops, and every one to come.
func (l *eventLoop) CloseAll() { l.e.CloseAll() }

// SayGoodbye starts the end of every connection with a processor.
func (l *eventLoop) SayGoodbye() { l.e.SayGoodbye() }

// Stop stops the loops, once every end is counted.
func (l *eventLoop) Stop() {
	l.e.Stop()
	close(l.stop)
	<-l.done
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
	ln, err := e.e.Listen(fd, func(err error, pause time.Duration) bool {
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

// dupSocket returns a duplicate of a socket, close-on-exec.
func dupSocket(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, dupErr
}

// adoptLoop admits c, whose socket is tc, and hands its descriptor to the
// event loops; tc itself is closed, and with it the runtime's hold on it.
func (s *Server) adoptLoop(tc *net.TCPConn, c *conn) error {
	l, err := s.eventLoop()
	if err != nil {
		tc.Close()
		return err
	}
	fd, err := dupSocket(tc)
	if err != nil {
		tc.Close()
		return fmt.Errorf("adopt: duplicate socket: %w", err)
	}
	if r, ok := s.admitReason(c.source, nil); !ok {
		refuse(tc)
		unix.Close(fd)
		if r == ReasonShutdown {
			return ErrServerClosed
		}
		return ErrRefused
	}
	tc.Close()
	var buffered []byte
	if len(c.prefix) > 0 {
		buffered = append([]byte(nil), c.prefix...)
	}
	var proc epoll.Processor
	if c.proc != nil {
		proc = loopProcessor{c.proc}
	}
	l.e.Adopt(fd, c.remote, buffered, proc)
	return nil
}

// loopProcessor is a Processor as the event loop calls it.
type loopProcessor struct{ p Processor }

func (lp loopProcessor) Process(out, in []byte) ([]byte, bool) { return lp.p.Process(out, in) }
func (lp loopProcessor) Stop(out []byte, why session.End) []byte {
	return lp.p.Stop(out, reasonOf(why))
}
func (lp loopProcessor) Quiet() bool { return quiet(lp.p) }
func (lp loopProcessor) Busy() bool  { return busy(lp.p) }
func (lp loopProcessor) Ended()      { tellEnded(lp.p) }
