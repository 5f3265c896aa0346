package echo

import (
	"errors"
	"net"
	"net/netip"

	"github.com/echod/echod/bandwidth"
)

// Handoff is a connection whose start needed blocking work on a goroutine
// (reading a PROXY header, an HTTP upgrade), given to the server to serve
// from then on: see Server.Adopt.
type Handoff struct {
	// Conn is the connection; the server owns it from now on. With the
	// epoll engine, a *net.TCPConn is served by the event loops: its
	// descriptor is taken over and Conn itself closed, so an idle one
	// holds no goroutine and no buffer. Anything else (a TLS connection,
	// net.Pipe) is served on a goroutine.
	Conn net.Conn
	// Remote is the client's address, which the limits count by and the
	// log names; the zero value means Conn's RemoteAddr. A PROXY header
	// gives it.
	Remote netip.AddrPort
	// Buffered holds bytes already read from Conn and not yet served:
	// they are served first, as if they had just arrived. Adopt copies
	// them.
	Buffered []byte
	// Processor, if not nil, turns what the client sends into what the
	// server writes back (a WebSocket frame echo). Nil echoes the bytes
	// unchanged, the plain echo with its zero-copy fast path.
	Processor Processor
}

// Processor turns one connection's input into its output on the server's
// read-to-write path, such as a WebSocket frame echo. The server calls it
// from one goroutine at a time, never blocked on the network: whatever it
// appends is written (and backpressure applied) by the engine.
//
// A Processor may also have a method Quiet() bool, asked after each
// Process: true says that what it consumed and wrote back was keep-alive
// traffic only (WebSocket pings and pongs), which IdleTimeout does not
// count as progress. It may have a method Busy() bool: true while a
// message is part-way through, which an end the server decides (but the
// idle timeout) lets finish, past MaxSessionBytes too, before Stop. And
// it may have a method Ended(), called once when its connection has
// ended, from the engine: it must not block.
type Processor interface {
	// Process consumes in, bytes just read from the client, and returns
	// out with what to write back appended. in is only valid during the
	// call: what Process needs of it later (part of a frame) it copies.
	// end asks to end the connection once out is written: its write side
	// is shut down and its input thrown away until the client closes
	// (as after MaxSessionBytes). A Processor may keep a partial frame
	// of its own; the connection's idle cost is what it keeps.
	Process(out, in []byte) (_ []byte, end bool)
	// Stop returns out with a last message appended for an end the
	// server decides, why: ReasonIdleTimeout, ReasonMaxSessionDuration,
	// ReasonMaxSessionBytes or ReasonShutdown. It is a WebSocket close
	// frame with the code for why. It is written, then the connection
	// ends as after end from Process. Stop is called at most once, and
	// Process never after it.
	Stop(out []byte, why Reason) []byte
}

// busy reports whether p says it is part-way through a message.
func busy(p Processor) bool {
	b, ok := p.(interface{ Busy() bool })
	return ok && b.Busy()
}

// tellEnded tells p, if it asks, that its connection has ended.
func tellEnded(p Processor) {
	if e, ok := p.(interface{ Ended() }); ok {
		e.Ended()
	}
}

// quiet reports whether p says its last Process moved keep-alives only.
func quiet(p Processor) bool {
	q, ok := p.(interface{ Quiet() bool })
	return ok && q.Quiet()
}

// ErrRefused is returned by Adopt for a connection over MaxConns or
// MaxConnsPerIP; the refusal is counted in Stats under its Reason.
var ErrRefused = errors.New("echo: connection refused by a limit")

// Adopt serves h.Conn as if Serve had accepted it: admitted under MaxConns
// and MaxConnsPerIP by h.Remote, then echoed (or processed) under the
// session limits, on the engine's event loops or a goroutine (see
// Handoff.Conn), until it ends; Shutdown waits for it like any other. It
// does not block. A caller holding a place for the connection through
// Reserve releases it first. Adopt returns ErrRefused (having reset the
// connection) when a limit refuses it, and ErrServerClosed after Shutdown
// or Close (having closed it).
func (s *Server) Adopt(h Handoff) error {
	if h.Conn == nil {
		return errors.New("echo: Adopt: no connection in the Handoff")
	}
	engine, err := s.engine()
	if err != nil {
		h.Conn.Close()
		return err
	}
	if bc, ok := h.Conn.(*bandwidth.Conn); ok && s.Bandwidth != nil {
		// Throttled by the web echo's listener: from now on by the
		// server, with the same budgets, so that its bytes count once.
		h.Conn = bc.Release()
	}
	c := &conn{Conn: h.Conn, prefix: h.Buffered, proc: h.Processor}
	if s.Bandwidth != nil {
		c.stop = make(chan struct{})
	}
	if h.Remote.IsValid() {
		c.remote = h.Remote
	} else if ta, ok := h.Conn.RemoteAddr().(*net.TCPAddr); ok {
		c.remote = ta.AddrPort()
	}
	c.source = c.remote.Addr().Unmap()
	if engine == EngineEpoll {
		if tc, ok := h.Conn.(*net.TCPConn); ok {
			return s.adoptLoop(tc, c)
		}
	}
	return s.adoptGoroutine(c)
}

// adoptGoroutine admits c and serves it on its own goroutine.
func (s *Server) adoptGoroutine(c *conn) error {
	if r, ok := s.admitReason(c.source, c); !ok {
		refuse(c.Conn)
		if r == ReasonShutdown {
			return ErrServerClosed
		}
		return ErrRefused
	}
	if len(c.prefix) > 0 {
		c.prefix = append([]byte(nil), c.prefix...)
	}
	go s.serveConn(c)
	return nil
}
