package netsim

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// chunk is bytes read from one side, held until their release time; eof
// marks the half-close that followed them.
type chunk struct {
	b   []byte
	at  time.Time
	eof bool
}

// A direction holds at most inFlight bytes in at most queued chunks (reads
// of up to readSize bytes): the path's buffer, so that a client that
// writes faster than the path carries is held back, as TCP would hold it.
// It must hold a delay's worth at the rate: 4 MiB caps a path at about
// 4 MiB a second for each second of Delay.
const (
	queued   = 4096
	inFlight = 4 << 20
	readSize = 16 << 10
)

// conn is one forwarded TCP connection: the client's side and the target's.
type conn struct {
	client, server net.Conn
	done           chan struct{} // closed when both sides are closed
	ctx            context.Context
	cancel         context.CancelFunc // with done, for the budgets' Acquire
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
	c.ctx, c.cancel = context.WithCancel(p.ctx)
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
	up, down := newQueue(), newQueue()
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
		c.cancel()
		c.client.Close()
		c.server.Close()
	})
}

// queue is one direction's chunks in flight, bounded in bytes too.
type queue struct {
	ch    chan chunk
	bytes *semaphore.Weighted
}

func newQueue() queue {
	return queue{ch: make(chan chunk, queued), bytes: semaphore.NewWeighted(inFlight)}
}

// read reads from src into q, stamping each chunk with when it may go on,
// and queues a half-close when src ends.
func (p *Proxy) read(c *conn, src net.Conn, q queue) {
	var last time.Time
	buf := make([]byte, readSize)
	for {
		n, err := src.Read(buf)
		now := time.Now()
		if n > 0 {
			c.active.Store(now.UnixNano())
			if q.bytes.Acquire(c.ctx, int64(n)) != nil {
				return
			}
			// The stamp is taken when the bytes arrived, before any wait
			// for room: the wait is the queue's, not the path's delay.
			last = p.path.release(now, last)
			select {
			case q.ch <- chunk{b: append([]byte(nil), buf[:n]...), at: last}:
			case <-c.done:
				return
			}
		}
		if errors.Is(err, io.EOF) {
			select {
			case q.ch <- chunk{eof: true, at: p.path.release(now, last)}:
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
func (p *Proxy) write(c *conn, dst net.Conn, q queue, pc *pacer, tp *tamperer) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var ch chunk
		select {
		case ch = <-q.ch:
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
		q.bytes.Release(int64(len(ch.b)))
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
