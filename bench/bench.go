// Package bench is a load generator for echo servers that verifies every
// byte it gets back. Run drives a server in one of several modes (ping-pong,
// bulk streaming, short sessions, idle connections, UDP) and returns a Result
// with rates, latency percentiles, errors and, for a local server, its CPU
// time and memory.
package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/echod/echod/internal/target"
)

// Mode is what a run does with its connections.
type Mode string

// The modes of a run.
const (
	// PingPong keeps Depth messages of Size bytes in flight on each
	// connection and measures each message's round trip.
	PingPong Mode = "pingpong"
	// Bulk streams on each connection as fast as it can while reading the
	// echo at the same time, and measures verified bytes per second.
	Bulk Mode = "bulk"
	// Cycle runs short sessions: connect, send Size bytes, half-close, read
	// to EOF, close. It measures sessions per second and session latency.
	Cycle Mode = "cycle"
	// Idle opens Conns connections, proves each is served with a one-byte
	// echo, and holds them open for the Duration.
	Idle Mode = "idle"
	// UDP keeps Depth datagrams of Size bytes in flight on each of Conns
	// sockets and measures verified datagrams per second.
	UDP Mode = "udp"
)

// Limits on the configuration, so a typo cannot exhaust the machine.
const (
	MaxSize    = 16 << 20 // bytes in one message or session
	MaxUDPSize = 65507    // the largest UDP payload over IPv4
	MaxDepth   = 4096
	MaxConns   = 1 << 20
)

// Config says what to run. The zero value of a field means its default.
type Config struct {
	Addr     string        // HOST:PORT of the server under test (required)
	Mode     Mode          // default PingPong
	Conns    int           // connections, or sockets for UDP; default 1
	Depth    int           // messages in flight per connection (PingPong, UDP); default 1
	Size     int           // bytes per message or session, or per write in Bulk; default DefaultSize(Mode)
	Duration time.Duration // how long to measure, or to hold for Idle; 0 with Count set: until Count
	Count    int64         // stop after this many measured messages, sessions or (Bulk) bytes; 0: no count
	Warmup   time.Duration // run this long before measuring; nothing in it counts towards rates
	Timeout  time.Duration // for one connect or one reply; default 5s
	// Rate, when positive, sends PingPong messages on a fixed schedule,
	// this many per second over all connections, and measures each one's
	// latency from its scheduled time (an open loop, as wrk2 does) and
	// from its actual send. Each message then starts with a header of
	// HeaderSize bytes: its sequence number and scheduled time.
	Rate float64
	// RampTo, when positive, makes Rate a ramp: the rate rises (or falls)
	// linearly from Rate at the start of the measured window to RampTo at
	// its end. The warm-up runs at Rate.
	RampTo float64
	// Steps, when set (and Rate is 0), runs the load once at each rate in
	// turn, each a run of its own: connect, Warmup, then Duration. The
	// Result adds them up, with a row per step in Steps.
	Steps   []float64
	Sources []netip.Addr // local addresses to connect from, in turn; none: the system's choice
	PID     int          // a local server's process ID, to report its CPU time and memory; 0: none

	// Transport is how connections reach the server in every mode but
	// UDP: target.TCP (the default), target.TLS, or target.WS or
	// target.WSS, where each message (and each write in Bulk) is one
	// WebSocket message. A connect includes the TLS handshake and the
	// WebSocket upgrade, so Cycle measures them too.
	Transport target.Transport
	// Path is the WebSocket URL's path and query; default "/".
	Path string
	// TLS is the client configuration for TLS and WSS; nil verifies the
	// server's certificate against the system's roots.
	TLS *tls.Config
	// MessageType is the type of WebSocket messages; default
	// BinaryMessages.
	MessageType MessageType

	// StartAt, when set, is when Run starts connecting: shards of a run on
	// several machines start together (their clocks agreeing, as NTP
	// keeps them). A time past starts at once.
	StartAt time.Time

	// Progress, when not nil, receives a line about once a second that
	// rewrites itself ("\r"), meant for a terminal.
	Progress io.Writer
}

// DefaultSize returns the message size a mode uses when Config.Size is 0.
func DefaultSize(m Mode) int {
	switch m {
	case Bulk:
		return 32 << 10
	case Cycle:
		return 1 << 10
	case Idle:
		return 1
	default:
		return 64
	}
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = PingPong
	}
	if c.Conns == 0 {
		c.Conns = 1
	}
	if c.Depth == 0 {
		c.Depth = 1
	}
	if c.Size == 0 {
		c.Size = DefaultSize(c.Mode)
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Duration == 0 && c.Count == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Transport == "" {
		c.Transport = target.TCP
		if c.Mode == UDP {
			c.Transport = target.UDP
		}
	}
	if c.TLS == nil && (c.Transport == target.TLS || c.Transport == target.WSS) {
		host, _, _ := net.SplitHostPort(c.Addr)
		c.TLS = &tls.Config{ServerName: host}
	}
	if c.webSocket() {
		if c.Path == "" {
			c.Path = "/"
		}
		if c.MessageType == "" {
			c.MessageType = BinaryMessages
		}
	}
	return c
}

// Validate reports the first thing wrong with c, after defaults are applied,
// as an error meant for the person who wrote the command line.
func (c Config) Validate() error {
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("invalid address %q: want HOST:PORT: %v", c.Addr, err)
	}
	switch c.Mode {
	case PingPong, Bulk, Cycle, Idle, UDP:
	default:
		return fmt.Errorf("unknown mode %q: want pingpong, bulk, cycle, idle or udp", c.Mode)
	}
	if err := c.validateTransport(); err != nil {
		return err
	}
	switch {
	case c.Conns < 1 || c.Conns > MaxConns:
		return fmt.Errorf("connections must be between 1 and %d, got %d", MaxConns, c.Conns)
	case c.Depth < 1 || c.Depth > MaxDepth:
		return fmt.Errorf("depth must be between 1 and %d, got %d", MaxDepth, c.Depth)
	case c.Depth > 1 && c.Mode != PingPong && c.Mode != UDP:
		return fmt.Errorf("depth applies to pingpong and udp only, not %s", c.Mode)
	case c.Size < 1 || c.Size > MaxSize:
		return fmt.Errorf("size must be between 1 and %d bytes, got %d", MaxSize, c.Size)
	case c.Mode == Idle && c.Size != 1:
		return fmt.Errorf("idle mode echoes one byte per connection; size does not apply")
	case c.Mode == UDP && (c.Size < udpHeader || c.Size > MaxUDPSize):
		return fmt.Errorf("udp size must be between %d and %d bytes, got %d", udpHeader, MaxUDPSize, c.Size)
	case c.Duration < 0:
		return fmt.Errorf("duration must not be negative, got %v", c.Duration)
	case c.Count < 0:
		return fmt.Errorf("count must not be negative, got %d", c.Count)
	case c.Mode == Idle && c.Count > 0:
		return fmt.Errorf("idle mode holds connections for a duration; count does not apply")
	case c.Warmup < 0:
		return fmt.Errorf("warm-up must not be negative, got %v", c.Warmup)
	case c.Timeout < 0:
		return fmt.Errorf("timeout must not be negative, got %v", c.Timeout)
	case c.PID < 0:
		return fmt.Errorf("pid must not be negative, got %d", c.PID)
	}
	if err := c.validateRate(); err != nil {
		return err
	}
	for _, s := range c.Sources {
		if !s.IsValid() {
			return errors.New("invalid source address")
		}
	}
	return nil
}

// validateTransport reports what is wrong with the transport fields of
// c, after defaults.
func (c Config) validateTransport() error {
	switch c.Transport {
	case target.TCP, target.TLS, target.WS, target.WSS:
		if c.Mode == UDP {
			return fmt.Errorf("udp mode runs over UDP, not %s: give a udp:// address", c.Transport)
		}
	case target.UDP:
		if c.Mode != UDP {
			return fmt.Errorf("%s mode runs over TCP, TLS or WebSocket, not UDP", c.Mode)
		}
	default:
		return fmt.Errorf("unknown transport %q: want tcp, tls, ws or wss", c.Transport)
	}
	switch {
	case c.TLS != nil && c.Transport != target.TLS && c.Transport != target.WSS:
		return fmt.Errorf("a TLS configuration applies to tls and wss, not %s", c.Transport)
	case c.Path != "" && !c.webSocket():
		return fmt.Errorf("a path applies to ws and wss, not %s", c.Transport)
	case c.MessageType != "" && !c.webSocket():
		return fmt.Errorf("a message type applies to ws and wss, not %s", c.Transport)
	}
	switch c.MessageType {
	case "", BinaryMessages, TextMessages, AlternateMessages:
	default:
		return fmt.Errorf("unknown message type %q: want binary, text or alternate", c.MessageType)
	}
	return nil
}

// Run drives the server at cfg.Addr as cfg says until the duration or count
// is reached or ctx is done, and returns what it measured. The error is for
// a run that could not start (a bad Config, a server process that cannot be
// observed, too few file descriptors); what went wrong while running, such as
// refused connections or corrupted echoes, is in the Result (see Result.Err).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg, addr, proc, err := prepare(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if !cfg.StartAt.IsZero() && !waitUntil(ctx, cfg.StartAt) {
		res := newRunner(cfg, addr, proc).newResult()
		res.Interrupted = true
		return res, nil
	}
	if len(cfg.Steps) > 0 {
		return runSteps(ctx, cfg, addr, proc, fixedSteps(cfg.Steps)), nil
	}
	return runOnce(ctx, cfg, addr, proc), nil
}

// prepare checks cfg and sets its defaults, then gets what a run needs
// before it starts: enough file descriptors, the server process observed
// (Config.PID), and the server's address resolved.
func prepare(ctx context.Context, cfg Config) (Config, string, *process, error) {
	if err := cfg.Validate(); err != nil {
		return cfg, "", nil, err
	}
	cfg = cfg.withDefaults()
	if err := raiseFileLimit(cfg.Conns); err != nil {
		return cfg, "", nil, err
	}
	var proc *process
	if cfg.PID > 0 {
		p, err := observe(cfg.PID)
		if err != nil {
			return cfg, "", nil, err
		}
		proc = p
	}
	addr, err := resolve(ctx, cfg)
	if err != nil {
		return cfg, "", nil, err
	}
	return cfg, addr, proc, nil
}

// runOnce is Run once its configuration is checked and its address
// resolved: one run at one rate.
func runOnce(ctx context.Context, cfg Config, addr string, proc *process) *Result {
	r := newRunner(cfg, addr, proc)
	var res *Result
	switch cfg.Mode {
	case Idle:
		res = r.runIdle(ctx)
	default:
		res = r.runLoad(ctx)
	}
	// Encoding a histogram made here cannot fail; without it the result
	// still has its summary, and only bench merge would miss it.
	res.Histogram, _ = r.lat.encoded()
	if r.sched != nil {
		r.sched.fill(res)
	}
	res.Hints = allHints(res, cfg, addr, proc)
	return res
}

// allHints are res's hints, and with a server process (Config.PID) the
// warning when it does not own the port under test.
func allHints(res *Result, cfg Config, addr string, proc *process) []string {
	hs := res.hints()
	if proc != nil {
		if h := ownerHint(cfg, addr); h != "" {
			hs = append(hs, h)
		}
	}
	return hs
}

// ownerHint warns when the process given with -pid does not own the port
// under test, whose CPU and memory would then be someone else's.
func ownerHint(cfg Config, addr string) string {
	_, portStr, err := net.SplitHostPort(addr)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		return ""
	}
	if owns, known := ownsPort(cfg.PID, port, cfg.Mode == UDP); owns || !known {
		return ""
	}
	return fmt.Sprintf("process %d does not own port %d, another process does: its CPU and memory figures are not the server's (give -pid the PID of the server on %s)", cfg.PID, port, addr)
}

// resolve looks the server's address up once, so that connects during the
// run do not each wait for a name lookup.
func resolve(ctx context.Context, cfg Config) (string, error) {
	return target.Resolve(ctx, cfg.Addr)
}
