package netsim

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// flow is the datagrams of one client address: the socket the proxy sends
// them to the target from, and the two directions' queues.
type flow struct {
	client net.Addr
	up     net.Conn   // connected to the target
	toUp   chan chunk // client to target
	done   chan struct{}
	once   sync.Once
	active atomic.Int64 // UnixNano of the last datagram either way
}

// StartUDP listens for UDP on 127.0.0.1:0 and forwards each client's
// datagrams to target (HOST:PORT) through path, from a socket of the
// proxy's own per client, and the target's answers back, until ctx ends or
// Close is called (call Close either way). Datagrams a direction cannot
// hold are dropped, as a router's queue drops them.
func StartUDP(ctx context.Context, target string, path Path) (*Proxy, error) {
	if err := path.validate(); err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netsim: listen: %w", err)
	}
	p := newProxy(ctx, target, path)
	p.pc = pc
	p.wg.Go(p.readClients)
	return p, nil
}

// readClients reads the datagrams that clients send to the proxy and hands
// each to its flow, starting one for a new client.
func (p *Proxy) readClients() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			continue // an ICMP error from an earlier send; the socket lives on
		}
		if p.path.Segment > 0 && n > p.path.Segment {
			continue // larger than the path carries
		}
		f := p.flow(from)
		if f == nil {
			continue
		}
		now := time.Now()
		f.active.Store(now.UnixNano())
		select {
		case f.toUp <- chunk{b: append([]byte(nil), buf[:n]...), at: p.path.release(now, time.Time{})}:
		default: // queue full: dropped
		}
	}
}

// flow returns the flow of client, starting it if there is none.
func (p *Proxy) flow(client net.Addr) *flow {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.flows[client.String()]; f != nil {
		return f
	}
	if p.ctx.Err() != nil {
		return nil
	}
	up, err := net.Dial("udp", p.target)
	if err != nil {
		return nil
	}
	f := &flow{client: client, up: up, toUp: make(chan chunk, queued), done: make(chan struct{})}
	f.active.Store(time.Now().UnixNano())
	p.flows[client.String()] = f
	down := make(chan chunk, queued)
	p.wg.Go(func() { p.sendDatagrams(f, f.toUp, &p.up, func(b []byte) { f.up.Write(b) }) })
	p.wg.Go(func() { p.readTarget(f, down) })
	p.wg.Go(func() {
		tp := tamperer{Tamper: p.path.Tamper}
		p.sendDatagrams(f, down, &p.down, func(b []byte) {
			tp.off = 0 // the tampered byte is At in every datagram
			p.pc.WriteTo(tp.apply(b), f.client)
		})
	})
	if p.path.IdleTimeout > 0 {
		p.wg.Go(func() { p.forget(f) })
	}
	return f
}

// end stops f and forgets it, so that its client's next datagram starts a
// new flow.
func (p *Proxy) end(f *flow) {
	f.once.Do(func() {
		close(f.done)
		f.up.Close()
		p.mu.Lock()
		if p.flows[f.client.String()] == f {
			delete(p.flows, f.client.String())
		}
		p.mu.Unlock()
	})
}

// readTarget queues the target's answers on f for the client.
func (p *Proxy) readTarget(f *flow, q chan<- chunk) {
	defer p.end(f)
	buf := make([]byte, 64<<10)
	for {
		n, err := f.up.Read(buf)
		if err != nil {
			select {
			case <-f.done:
				return
			default:
				continue // an ICMP port unreachable; the target may come back
			}
		}
		if p.path.Segment > 0 && n > p.path.Segment {
			continue
		}
		now := time.Now()
		f.active.Store(now.UnixNano())
		select {
		case q <- chunk{b: append([]byte(nil), buf[:n]...), at: p.path.release(now, time.Time{})}:
		default:
		}
	}
}

// sendDatagrams sends the datagrams of q with send at their release time,
// paced by pc, in order.
func (p *Proxy) sendDatagrams(f *flow, q <-chan chunk, pc *pacer, send func([]byte)) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var ch chunk
		select {
		case ch = <-q:
		case <-f.done:
			return
		}
		if !sleep(t, time.Until(ch.at), f.done) || !pc.wait(len(ch.b), t, f.done) {
			return
		}
		send(ch.b)
	}
}

// forget ends f once no datagram has gone either way for the path's
// IdleTimeout.
func (p *Proxy) forget(f *flow) {
	t := time.NewTimer(p.path.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-f.done:
			return
		}
		quiet := time.Since(time.Unix(0, f.active.Load()))
		if quiet >= p.path.IdleTimeout {
			p.end(f)
			return
		}
		t.Reset(p.path.IdleTimeout - quiet)
	}
}
