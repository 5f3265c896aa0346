// Package netpath measures what the network path between this machine and
// an echo server does to a connection: round-trip time, throughput and what
// limits it, half-close, idle timeout, segmenting and tampering, and TLS. It
// judges any echo server by its bytes alone; when the server is echod with
// its web echo, it also asks echod how it sees the connection.
package netpath

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/echod/echod/internal/target"
)

// Defaults for the Config's zero-valued fields.
const (
	DefaultEchoes   = 20
	DefaultDuration = 2 * time.Second
	DefaultMaxIdle  = 5 * time.Minute
	DefaultPatience = 5 * time.Second
	DefaultBulk     = 1 << 20
)

// Config is what Run measures and how long it may take. Only Target is
// required.
type Config struct {
	// Target is the echo server: TCP, UDP, TLS, or a WebSocket URL.
	Target target.Target
	// TLS configures the handshake for tls:// and wss:// targets; nil
	// means an unverified handshake.
	TLS *tls.Config
	// InfoURL is echod's connection info endpoint (see docs/web.md), for
	// what echod sees of this client. Empty means none, except that for a
	// ws:// or wss:// target the same server's is tried.
	InfoURL string
	// Echoes is how many small echoes time the round trip; 0 means
	// DefaultEchoes.
	Echoes int
	// Duration is how long each throughput measurement runs; 0 means
	// DefaultDuration.
	Duration time.Duration
	// MaxIdle is the longest idle time probed; 0 means DefaultMaxIdle,
	// negative means no idle probes.
	MaxIdle time.Duration
	// Patience is how long to wait for an echo before taking it as lost;
	// 0 means DefaultPatience.
	Patience time.Duration
	// Bulk is how many bytes the tampering check echoes and compares; 0
	// means DefaultBulk.
	Bulk int
	// Progress, if not nil, is told each finding as it is made.
	Progress func(Finding)
}

func (c *Config) defaults() {
	if c.Echoes <= 0 {
		c.Echoes = DefaultEchoes
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDuration
	}
	if c.MaxIdle == 0 {
		c.MaxIdle = DefaultMaxIdle
	}
	if c.Patience <= 0 {
		c.Patience = DefaultPatience
	}
	if c.Bulk <= 0 {
		c.Bulk = DefaultBulk
	}
	if c.InfoURL == "" && c.Target.IsWebSocket() {
		scheme := "http"
		if c.Target.Transport == target.WSS {
			scheme = "https"
		}
		c.InfoURL = scheme + "://" + c.Target.Addr() + InfoPath
	}
}

// InfoPath is where echod's web echo answers with its view of the
// requesting connection.
const InfoPath = "/.well-known/echod/conn"

// ErrUnreachable is returned, wrapped, when nothing answers at the target.
var ErrUnreachable = errors.New("unreachable")

// ErrNoEcho is returned, wrapped, when the server accepts but not one
// small echo comes back: there is no path to measure.
var ErrNoEcho = errors.New("no echo")

// Run measures the path to cfg.Target. A measurement that fails is a
// finding in the report; Run returns an error (with the report so far)
// only when nothing answers at the target (ErrUnreachable), when the
// server answers but not one small echo comes back (ErrNoEcho), or when
// ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	r := &Report{Target: cfg.Target.String(), Transport: string(cfg.Target.Transport), progress: cfg.Progress}
	if cfg.Target.Transport == target.UDP {
		return r, runUDP(ctx, cfg, r)
	}
	d := dialer{cfg: cfg}
	first, err := d.dial(ctx)
	if err != nil {
		return r, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	r.set(&first.timing, func() { r.Connect = &first.timing })
	if first.tls != nil {
		ti := tlsInfo(first.tls, first.timing.Handshake, cfg.TLS)
		r.set(ti, func() { r.TLS = ti })
	}

	// The idle probes run beside everything else: the longest of them
	// bounds the run, not their sum.
	var wg sync.WaitGroup
	defer wg.Wait()
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	echoes := make(chan struct{}) // closed once the round trip has had an echo
	if cfg.MaxIdle > 0 {
		wg.Go(func() {
			idle := probeIdle(probeCtx, idleTimes(cfg.MaxIdle), probeStream(d, cfg.Patience))
			select {
			case <-echoes:
			case <-probeCtx.Done():
				return // stopped: the server does not echo
			}
			if ctx.Err() != nil {
				return // cut short: the probes that did not finish would read as survived
			}
			r.set(idle, func() { r.Idle = idle })
		})
	}
	if cfg.InfoURL != "" {
		wg.Go(func() {
			s := askServer(ctx, cfg)
			r.set(s, func() { r.Server = s })
		})
	}

	rtt := measureRTT(ctx, first, cfg)
	first.Close()
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.set(rtt, func() { r.RTT = rtt })
	if rtt.Echoes == 0 {
		// Nothing else can be measured; say so once, and stop.
		stopProbes()
		return r, fmt.Errorf("%w: %s", ErrNoEcho, rtt.Err)
	}
	close(echoes)
	patience := cfg.Patience
	if rtt.Err == "" {
		patience = max(patience, 4*rtt.Max)
	}
	// Each measurement cut short by ctx is left out rather than reported
	// as failed.
	// A dropped byte leaves the bulk echo short: how long to wait for it
	// is how long the path may fall silent, not a whole -patience.
	quiet := min(patience, max(2*time.Second, 4*rtt.Max))
	integ := checkIntegrity(ctx, d, cfg, quiet)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.set(integ, func() { r.Integrity = integ })
	tp := measureThroughput(ctx, d, cfg)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.set(tp, func() { r.Throughput = tp })
	hc := &HalfClose{Err: errNoHalfClose.Error()}
	if d.halfCloses() {
		hc = checkHalfClose(ctx, d, patience)
	}
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	r.set(hc, func() { r.HalfClose = hc })
	wg.Wait()
	return r, ctx.Err()
}

// Timing is how long it took to reach the server.
type Timing struct {
	// Connect is the TCP handshake: about one round trip.
	Connect time.Duration `json:"connect_ns"`
	// Handshake is the TLS handshake after it, if any.
	Handshake time.Duration `json:"tls_handshake_ns,omitempty"`
	// Upgrade is the WebSocket upgrade after those, if any.
	Upgrade time.Duration `json:"upgrade_ns,omitempty"`
}
