package echo

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Reason names a limit that made the server refuse or end a TCP connection or
// drop a UDP datagram. Its String is a short, stable word for logs and metric
// labels, such as "max-conns". Beyond the limits, it names the other ends of
// a connection in the log ("eof", "reset by client"), for both engines.
type Reason uint8

// The reasons, a fixed vocabulary: every refusal, limit-ended connection and
// dropped datagram is counted under exactly one of them (see Server.Stats).
const (
	// ReasonMaxConns: a connection was refused because MaxConns were open.
	ReasonMaxConns Reason = iota
	// ReasonMaxConnsPerIP: a connection was refused because its source
	// address (an IPv6 /64) already had MaxConnsPerIP open.
	ReasonMaxConnsPerIP
	// ReasonIdleTimeout: a connection made no progress in either direction
	// for IdleTimeout.
	ReasonIdleTimeout
	// ReasonMaxSessionDuration: a connection was open for MaxSessionDuration.
	ReasonMaxSessionDuration
	// ReasonMaxSessionBytes: a connection sent MaxSessionBytes.
	ReasonMaxSessionBytes
	// ReasonUDPPrivilegedPort: a datagram came from a port below 1024, where
	// other echo, chargen and daytime services live (CVE-1999-0103).
	ReasonUDPPrivilegedPort
	// ReasonUDPBadSource: a datagram came from port 0 or from an address no
	// reply may go to: unspecified, multicast, broadcast or reserved.
	ReasonUDPBadSource
	// ReasonUDPBadDestination: a datagram was sent to a broadcast or
	// multicast address (the "Fraggle" attack).
	ReasonUDPBadDestination
	// ReasonUDPLoop: a datagram came from the port the server listens on,
	// or brought back, too soon, the bytes the server last sent its source:
	// another echo service, on any port, answering.
	ReasonUDPLoop
	// ReasonUDPRateLimit: the datagram's source address (an IPv6 /64) was
	// over UDPSourceRate.
	ReasonUDPRateLimit
	// ReasonUDPGlobalCap: the server was over UDPGlobalRate.
	ReasonUDPGlobalCap
	// ReasonEgressBudget: a connection was refused, or a datagram
	// dropped, because Bandwidth's egress budget was spent.
	ReasonEgressBudget
	// ReasonUDPBandwidth: a datagram's reply would have taken its source
	// address (an IPv6 /64) over Bandwidth's per-address rate.
	ReasonUDPBandwidth

	numReasons = iota
)

// The ends of a connection that no limit caused: only the log names them.
const (
	endEOF   Reason = numReasons + iota // the client half-closed and got all its echo
	endReset                            // the client reset or vanished
	// ReasonShutdown is the end of a connection that Shutdown or Close
	// ended (or refused): only the log and a Processor's Stop name it.
	ReasonShutdown
	endFailed // an unexpected error, logged beside it
	endDone   // its Processor ended it (a WebSocket close handshake)
)

// Reasons returns every Reason, in a fixed order.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

var reasonNames = [...]string{
	ReasonMaxConns: "max-conns", ReasonMaxConnsPerIP: "max-conns-per-ip",
	ReasonIdleTimeout: "idle-timeout", ReasonMaxSessionDuration: "max-session-duration",
	ReasonMaxSessionBytes: "max-session-bytes", ReasonUDPPrivilegedPort: "udp-privileged-port",
	ReasonUDPBadSource: "udp-bad-source", ReasonUDPBadDestination: "udp-bad-destination",
	ReasonUDPLoop: "udp-loop", ReasonUDPRateLimit: "udp-rate-limit", ReasonUDPGlobalCap: "udp-global-cap",
	ReasonEgressBudget: "egress-budget", ReasonUDPBandwidth: "udp-bandwidth",
	endEOF: "eof", endReset: "reset by client", ReasonShutdown: "closed by server", endFailed: "failed",
	endDone: "done",
}

// Stats is a snapshot of the server's counters, for metrics. Counters only
// grow; Conns goes up and down.
type Stats struct {
	// Conns is the number of TCP connections open now.
	Conns int
	// Accepted counts the TCP connections accepted and served; connections
	// refused by a limit are not among them.
	Accepted uint64
	// AcceptErrors counts accepts that failed and were retried, such as for
	// running out of file descriptors (EMFILE).
	AcceptErrors uint64
	// UDPReplies counts the datagrams echoed.
	UDPReplies uint64
	// TCPBytesIn and TCPBytesOut count the bytes read from and written to
	// TCP connections (for TLS, the plaintext), as they move.
	TCPBytesIn, TCPBytesOut uint64
	// UDPDatagrams counts the datagrams received, answered or not;
	// UDPBytesIn and UDPBytesOut the bytes received and echoed.
	UDPDatagrams            uint64
	UDPBytesIn, UDPBytesOut uint64
	// Limited holds, for every Reason (zero counts included), how many
	// connections were refused or ended and datagrams dropped for it.
	Limited map[Reason]uint64
}

// Stats returns a snapshot of the server's counters. It is safe to call at
// any time, from any goroutine, also while the server runs.
func (s *Server) Stats() Stats {
	st := Stats{
		Accepted:     s.counts.accepted.Load(),
		AcceptErrors: s.counts.acceptErrors.Load(),
		UDPReplies:   s.counts.udpReplies.Load(),
		TCPBytesIn:   s.counts.tcpBytesIn.Load(),
		TCPBytesOut:  s.counts.tcpBytesOut.Load(),
		UDPDatagrams: s.counts.udpDatagrams.Load(),
		UDPBytesIn:   s.counts.udpBytesIn.Load(),
		UDPBytesOut:  s.counts.udpBytesOut.Load(),
		Limited:      make(map[Reason]uint64, numReasons),
	}
	for r := range Reason(numReasons) {
		st.Limited[r] = s.counts.limited[r].Load()
	}
	st.Conns = int(s.served.Load())
	return st
}

// counters are the numbers behind Stats, updated without locks: an atomic
// add per read or write is nothing beside the system call it counts.
type counters struct {
	accepted     atomic.Uint64
	acceptErrors atomic.Uint64
	udpReplies   atomic.Uint64
	limited      [numReasons]atomic.Uint64

	tcpBytesIn, tcpBytesOut atomic.Uint64
	udpDatagrams            atomic.Uint64
	udpBytesIn, udpBytesOut atomic.Uint64
}

// logInterval is the least time between two log lines about limits, or
// about accept errors, which under attack would come once per packet.
const logInterval = 10 * time.Second

// limitLog writes the summary lines about limits: the first limit applied
// is logged at once, then at most one line per logInterval with the counts
// since the previous one. A line held back is written at the end of the
// interval, whether or not another count follows: every count is in a line.
type limitLog struct {
	pending atomic.Bool // a line is due: counts from now on will be in it

	mu      sync.Mutex
	every   time.Duration      // logInterval, unless a test sets it
	last    time.Time          // when the previous line was written
	timer   *time.Timer        // writes the line held back, if one is
	stopped bool               // by Shutdown or Close: no more timers
	logged  [numReasons]uint64 // the counts as of the previous line
}

// limited counts limit r (an r that is no limit is ignored) and makes sure
// a summary line will tell of it. It takes no lock unless a line is to be
// scheduled, as it may be called for every datagram of a flood.
func (s *Server) limited(r Reason) { s.count(r, false) }

// count is limited, writing the line it is due on a goroutine of its own
// if later.
func (s *Server) count(r Reason, later bool) {
	if r >= numReasons {
		return
	}
	s.counts.limited[r].Add(1)
	if s.Logger == nil || s.limitLog.pending.Load() || !s.limitLog.pending.CompareAndSwap(false, true) {
		return
	}
	l := &s.limitLog
	l.mu.Lock()
	wait := time.Until(l.last.Add(l.interval()))
	if (wait > 0 || later) && !l.stopped {
		// An event loop's line is written at once, but by the timer's
		// goroutine, which Shutdown and Close stop with the others.
		l.timer = time.AfterFunc(max(wait, 0), s.logLimits)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	s.logLimits()
}

// limitedLater is limited for an event loop, which never writes a log line
// itself.
func (s *Server) limitedLater(r Reason) { s.count(r, true) }

// logLimits logs the counts since the previous summary, if there are any.
func (s *Server) logLimits() {
	l := &s.limitLog
	l.mu.Lock()
	// Cleared first: a count added after this schedules the next line.
	l.pending.Store(false)
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	var attrs []any
	for r := range Reason(numReasons) {
		n := s.counts.limited[r].Load()
		if d := n - l.logged[r]; d > 0 {
			attrs = append(attrs, slog.Uint64(r.String(), d))
			l.logged[r] = n
		}
	}
	if len(attrs) == 0 || s.Logger == nil {
		l.mu.Unlock()
		return
	}
	l.last = time.Now()
	every := l.interval()
	// Written outside the lock, which an event loop may take to count.
	l.mu.Unlock()
	s.Logger.Info("limits applied", slog.Group("count", attrs...), "next_summary_in", every)
}

func (l *limitLog) interval() time.Duration {
	if l.every == 0 {
		return logInterval
	}
	return l.every
}

// stop starts no timer from then on, so none outlives the server: a count
// after it is logged at once. The caller logs the line held back.
func (l *limitLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}
