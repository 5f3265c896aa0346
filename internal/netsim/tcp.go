package netsim

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// chunk is bytes read from one side, held until their release time; eof
// marks the half-close that followed them.
type chunk struct {
	b   []byte
	at  time.Time
	eof bool
}

// queued bounds how many chunks a direction holds in flight: with reads of
// at most readSize bytes it is the path's buffer, so a client that writes
// faster than the path carries is held back as TCP would hold it.
const (
	queued   = 256
	readSize = 16 << 10
)

// conn is one forwarded TCP connection: the client's side and the target's.
type conn struct {
	client, server net.Conn
	done           chan struct{} // closed when both sides are closed
	once           sync.Once
	active         atomic.Int64 // UnixNano of the last byte read either way
	ended          atomic.Int32 // directions that delivered their half-close
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed by shutdown; a loopback accept has no other error worth retrying
		}
		p.wg.Go(func() { p.forward(c) })
	}
}

// forward dials the target for the client connection c and runs the two
// directions between them until both end.
func (p *Proxy) forward(client net.Conn) {
	var d net.Dialer
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	c := &conn{client: client, server: server, done: make(chan struct{})}
	c.active.Store(time.Now().UnixNano())
	p.mu.Lock()
	if p.ctx.Err() != nil { // shut down while dialing
		p.mu.Unlock()
		c.closeBoth()
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	up := make(chan chunk, queued)
	down := make(chan chunk, queued)
	wg.Go(func() { p.read(c, client, up) })
	wg.Go(func() { p.write(c, server, up, &p.up, nil) })
	wg.Go(func() { p.read(c, server, down) })
	wg.Go(func() { p.write(c, client, down, &p.down, &tamperer{Tamper: p.path.Tamper}) })
	if p.path.IdleTimeout > 0 {
		wg.Go(func() { p.idle(c) })
	}
	wg.Wait()

	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// closeBoth closes both sides of c, once.
func (c *conn) closeBoth() {
	c.once.Do(func() {
		close(c.done)
		c.client.Close()
		c.server.Close()
	})
}

// read reads from src into q, stamping each chunk with when it may go on,
// and queues a half-close when src ends.
func (p *Proxy) read(c *conn, src net.Conn, q chan<- chunk) {
	var last time.Time
	for {
		b := make([]byte, readSize)
		n, err := src.Read(b)
		now := time.Now()
		if n > 0 {
			c.active.Store(now.UnixNano())
			last = p.path.release(now, last)
			select {
			case q <- chunk{b: b[:n], at: last}:
			case <-c.done:
				return
			}
		}
		if errors.Is(err, io.EOF) {
			select {
			case q <- chunk{eof: true, at: p.path.release(now, last)}:
			case <-c.done:
			}
			return
		}
		if err != nil {
			c.closeBoth() // a reset, or closed by the other direction
			return
		}
	}
}

// write delivers the chunks of q to dst at their release time, paced and
// paced by pc and cut into segments, passing each through tp (when not nil).
func (p *Proxy) write(c *conn, dst net.Conn, q <-chan chunk, pc *pacer, tp *tamperer) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var ch chunk
		select {
		case ch = <-q:
		case <-c.done:
			return
		}
		if !sleep(t, time.Until(ch.at), c.done) {
			return
		}
		if ch.eof {
			if p.path.CloseOnHalfClose || c.ended.Add(1) == 2 {
				c.closeBoth()
				return
			}
			if hc, ok := dst.(interface{ CloseWrite() error }); ok {
				hc.CloseWrite()
			}
			return
		}
		b := ch.b
		if tp != nil {
			b = tp.apply(b)
		}
		for len(b) > 0 {
			n := len(b)
			if p.path.Segment > 0 {
				n = min(n, p.path.Segment)
			}
			if !pc.wait(n, t, c.done) {
				return
			}
			if _, err := dst.Write(b[:n]); err != nil {
				c.closeBoth()
				return
			}
			b = b[n:]
		}
	}
}

// idle closes c once no byte has gone either way for the path's
// IdleTimeout.
func (p *Proxy) idle(c *conn) {
	t := time.NewTimer(p.path.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		quiet := time.Since(time.Unix(0, c.active.Load()))
		if quiet >= p.path.IdleTimeout {
			c.closeBoth()
			return
		}
		t.Reset(p.path.IdleTimeout - quiet)
	}
}
