// Package echo implements the echo service of RFC 862 over TCP: every byte a
// client sends is written back to it, unmodified and as it arrives. A Server
// is safe to expose to untrusted clients: the memory a connection holds is
// bounded whatever it sends, and slow readers are met with TCP backpressure.
package echo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// ErrServerClosed is returned by Serve after a call to Shutdown or Close.
var ErrServerClosed = errors.New("echo: server closed")

// Server serves echo on the listeners given to Serve. The zero value is ready
// to use; the exported fields configure it and must not change once Serve has
// been called.
type Server struct {
	// Logger receives a line for each finished connection at debug level and
	// for accept errors at error level. Nil discards everything.
	Logger *slog.Logger

	// Engine chooses how connections are served. "goroutine" (also the
	// empty string) gives each connection its own goroutine: the portable
	// reference engine. "epoll" (Linux only) serves plain TCP connections
	// from a few event loops, one per usable CPU, at a fraction of the
	// memory and CPU; connections that are not a *net.TCPConn (TLS, for
	// one) still get a goroutine. "auto" is "epoll" on Linux and
	// "goroutine" elsewhere.
	Engine string

	mu        sync.Mutex
	closing   bool // set once by Shutdown or Close; no connection starts after it
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup // one count per connection goroutine
	buffers   sync.Pool      // of *[bufferSize]byte, shared by all connections

	// The event loop, while a Serve call or a connection uses it.
	loop       *eventLoop
	loopServes int // Serve calls using loop
	loopConns  int // connections in loop
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Serve accepts connections on l and echoes each of them on its own goroutine.
// It returns ErrServerClosed after Shutdown or Close. When ctx is done it
// closes l and every connection it accepted, waits for them to end, and
// returns ctx.Err(). Serve always closes l before returning.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if !s.track(l) {
		l.Close()
		return ErrServerClosed
	}
	defer s.untrack(l)
	loop, err := s.acquireLoop()
	if err != nil {
		return err
	}
	// Connections of this call alone, so a cancelled ctx ends only them.
	var mine sync.WaitGroup
	var group *loopGroup
	if loop != nil {
		defer s.releaseLoop()
		group = loop.newGroup()
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				if group != nil {
					group.Close()
					group.Wait()
				}
				mine.Wait()
				return ctx.Err()
			}
			if s.isClosing() {
				return ErrServerClosed
			}
			if !isTemporary(err) {
				return fmt.Errorf("accept on %s: %w", l.Addr(), err)
			}
			// Running out of file descriptors and similar errors pass: back
			// off rather than spin, and keep serving the connections we have.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logger().Error("accept failed; retrying", "listener", l.Addr().String(), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			continue
		}
		backoff = 0
		if !s.add(c) {
			c.Close()
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && loop != nil {
			s.handOff(loop, group, tc)
			continue
		}
		mine.Add(1)
		go func() {
			defer s.wg.Done()
			defer mine.Done()
			defer s.remove(c)
			stop := context.AfterFunc(ctx, func() { c.Close() })
			defer stop()
			s.serveConn(c)
		}()
	}
}

// Shutdown stops the server gracefully: it closes every listener at once, so
// Serve returns, then waits for open connections to end by themselves. If ctx
// is done first, it closes the connections that remain, waits for their
// goroutines, and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.beginClose()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.stopLoopIfUnused()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: it closes every listener and connection and
// waits for the connection goroutines to return.
func (s *Server) Close() error {
	s.beginClose()
	s.closeConns()
	s.wg.Wait()
	s.stopLoopIfUnused()
	return nil
}

func (s *Server) track(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) untrack(l net.Listener) {
	s.mu.Lock()
	delete(s.listeners, l)
	s.mu.Unlock()
	l.Close()
}

// add registers c and counts its goroutine, unless the server is closing. The
// check and the count happen under one lock so that Shutdown's Wait never
// races with a late Add.
func (s *Server) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) beginClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
	if s.loop != nil {
		s.loop.closeAll()
	}
}

// isTemporary reports whether an accept error is worth retrying: a shortage
// of file descriptors, buffers or memory, or a connection that died in the
// accept queue.
func isTemporary(err error) bool {
	for _, errno := range []syscall.Errno{
		syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EINTR, syscall.EAGAIN,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
