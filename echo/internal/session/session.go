// Package session holds the rules of an echo session's limits, once, for
// both of echod's engines: what counts as progress, when a connection is
// idle or too old, what happens at its byte cap, and why it ended. It does
// no I/O and reads no clock: an engine reports what it read and wrote and
// the time, and does what the Policy says.
//
// The seam for budgets: an engine asks ReadLimit how much it may read
// before every read. A bandwidth budget (bytes per second per connection,
// per client address) would be one more field of Limits, and ReadLimit
// would answer 0 with the time reading may resume: the engine pauses
// reading, which is backpressure, and nothing is lost. Sessions of another
// protocol (WebSocket) are the same State driven by the same engines; what
// differs is a Processor's goodbye at Stop.
package session

import "time"

// Limits are a server's session limits. Zero fields mean no limit.
type Limits struct {
	// Idle ends a session with no progress for this long: nothing read,
	// written, or taken by the client off the send buffer.
	Idle time.Duration
	// Duration ends a session this long after it started.
	Duration time.Duration
	// Bytes ends a session once the client has sent this many bytes, all
	// of them served: its write side is shut down and its input thrown
	// away, until the client closes its side or takes none of what was
	// written for Linger.
	Bytes  int64
	Linger time.Duration
}

// End is why a session ended. The zero End is a session still open.
type End uint8

// The ends of a session: the first four are how its I/O ended, reported by
// the engine; the rest are the Policy's own decisions.
const (
	Open        End = iota
	EOF             // the client half-closed and got everything
	Reset           // the client reset or vanished
	Closed          // the server closed it (Shutdown, Close)
	Failed          // an unexpected error
	Done            // its processor ended it (a WebSocket close handshake)
	IdleTimeout     // Limits.Idle
	MaxDuration     // Limits.Duration
	MaxBytes        // Limits.Bytes
)

// State is one session's accounting: a few words, kept in the engine's
// connection. Times are nanoseconds on the engine's monotonic clock.
type State struct {
	start, last int64
	in, out     int64
	// unsent is the socket's count of bytes written that the client has
	// not taken, as last seen: -1 to look again (something was written
	// since), 0 for none (no need to look until the next write).
	unsent int32
	// ending is the limit (or Done) that ended the session while it
	// finishes: its last bytes go out, then its input is thrown away.
	// Open while the session serves.
	ending End
	// ended is set once the engine should close it; see Due.
	ended End
}

// In and Out return the bytes read from and written to the client.
func (s *State) In() int64  { return s.in }
func (s *State) Out() int64 { return s.out }

// Last returns when the session last made progress.
func (s *State) Last() int64 { return s.last }

// Duration returns how long the session has been open at now.
func (s *State) Duration(now int64) time.Duration { return time.Duration(now - s.start) }

// Ending returns the limit (or Done, or Closed for a drain) that ended the
// session while it finishes; Open while it serves.
func (s *State) Ending() End { return s.ending }

// Finishing reports whether the session is ending: its input is thrown
// away, and only the client taking what was written is progress.
func (s *State) Finishing() bool { return s.ending != Open }

// Policy applies Limits to sessions. Its zero value applies none.
type Policy struct {
	l Limits
}

// longest is what a longer time limit is taken as: far enough from the
// largest time.Duration that adding to it cannot overflow into the past.
const longest = 100 * 365 * 24 * time.Hour

// New returns the Policy for l; negative limits mean none, and time limits
// beyond a century a century.
func New(l Limits) *Policy {
	clamp := func(d time.Duration) time.Duration { return max(min(d, longest), 0) }
	return &Policy{l: Limits{
		Idle: clamp(l.Idle), Duration: clamp(l.Duration), Bytes: max(l.Bytes, 0), Linger: clamp(l.Linger),
	}}
}

// Limits returns the limits p applies.
func (p *Policy) Limits() Limits { return p.l }

// Start begins a session at now.
func (p *Policy) Start(now int64) State {
	return State{start: now, last: now}
}

// ReadLimit is how many bytes the session may read next, at most max: so
// that exactly Limits.Bytes are served. It is the engine's one question
// before a read, and where a budget would pause reading (see the package
// doc).
func (p *Policy) ReadLimit(s *State, max int) int {
	if p.l.Bytes == 0 {
		return max
	}
	return int(min(p.l.Bytes-s.in, int64(max)))
}

// Read records n bytes read at now, and reports whether the session has
// reached its byte cap: once what it read is written, the engine calls
// Finish.
func (p *Policy) Read(s *State, n int, now int64) (atCap bool) {
	if n > 0 {
		s.in += int64(n)
		s.last = now
		// Its echo is about to be written, and a blocking write may wait
		// long before Wrote: the unsent count is worth a look meanwhile.
		s.unsent = -1
	}
	return p.AtCap(s)
}

// AtCap reports whether the session has read Limits.Bytes and should end
// once what it read is written.
func (p *Policy) AtCap(s *State) bool {
	return p.l.Bytes > 0 && s.in >= p.l.Bytes && s.ending == Open
}

// Wrote records n bytes written at now.
func (p *Policy) Wrote(s *State, n int, now int64) {
	if n > 0 {
		s.out += int64(n)
		s.last = now
		s.unsent = -1 // the count seen is out of date
	}
}

// Progress records progress at now that the engine saw without counting it
// byte by byte (the goroutine engine's watchdog sees that bytes moved).
func (p *Policy) Progress(s *State, now int64) {
	s.last = now
	s.unsent = -1
}

// Quiet takes back the progress recorded since last (what Last returned
// before): traffic that does not count, such as a processor's keep-alives
// (WebSocket pings and their pongs). The bytes stay counted.
func (p *Policy) Quiet(s *State, last int64) {
	s.last = min(s.last, last)
}

// Finish ends the session for why (MaxBytes at the cap, Done when its
// processor asks, or whatever Due returned as a Stop): the engine writes
// what is pending, shuts its write side down, and throws its input away
// until the client closes its side or, for Limits.Linger, takes nothing.
func (p *Policy) Finish(s *State, why End, now int64) {
	if s.ending != Open {
		return
	}
	s.ending = why
	s.last = now
	s.unsent = -1
}

// WantUnsent reports whether Due should know the socket's unsent count at
// now (SIOCOUTQ): something was written and waits, and no progress has
// been seen for every, the interval between checks.
func (p *Policy) WantUnsent(s *State, now int64, every time.Duration) bool {
	timed := p.l.Idle > 0 || s.ending != Open && p.l.Linger > 0
	return timed && s.unsent != 0 && now-s.last >= int64(every)
}

// Unsent records the socket's count of bytes the client has not taken, q,
// at now: fewer than last seen is progress, the client is reading slowly
// while a write waits. Right after a write the count is a new baseline.
func (p *Policy) Unsent(s *State, q int, now int64) {
	if s.unsent > 0 && int32(q) < s.unsent {
		s.last = now
	}
	s.unsent = int32(min(q, 1<<30))
}

// Action is what Due asks of an engine.
type Action uint8

// The actions.
const (
	// Continue: nothing to do yet.
	Continue Action = iota
	// Close: close the connection now; Ended names why.
	Close
	// Stop: a time limit ended a session that has a goodbye to say (a
	// WebSocket close frame): the engine writes it, then goes on as after
	// Finish, which Due has called.
	Stop
)

// Due applies the time limits at now, to a session with a goodbye to say
// (a processor) or not, and says what the engine must do.
func (p *Policy) Due(s *State, now int64, goodbye bool) Action {
	if s.ended != Open {
		return Close
	}
	var why End
	switch {
	case p.l.Duration > 0 && now-s.start >= int64(p.l.Duration):
		why = MaxDuration
	case s.ending != Open:
		if p.l.Linger > 0 && now-s.last >= int64(p.l.Linger) {
			s.ended = s.ending
			return Close
		}
		return Continue
	case p.l.Idle > 0 && now-s.last >= int64(p.l.Idle):
		why = IdleTimeout
	default:
		return Continue
	}
	if s.ending != Open {
		// Saying goodbye already: the limit only cuts it short.
		s.ended = s.ending
		return Close
	}
	if goodbye {
		p.Finish(s, why, now)
		return Stop
	}
	s.ended = why
	return Close
}

// Ended names why the session ended, given how its I/O ended (EOF, Reset,
// Closed, Failed, or Open when the engine closed it because Due said so).
// A limit decided before is the reason whatever the I/O then did: a
// session past its byte cap ends for the cap, however the client closes.
func (p *Policy) Ended(s *State, io End) End {
	switch {
	case s.ended != Open:
		return s.ended
	case s.ending != Open:
		return s.ending
	case io == Open:
		return Closed
	}
	return io
}

// Next is how long until a session's time limits should be looked at
// again, for an engine with a timer per session: an eighth of the idle
// time (or the linger) after the last check, or when its duration runs
// out if that is sooner. Zero means no time limit applies.
func (p *Policy) Next(s *State, now int64) time.Duration {
	idle := p.l.Idle
	if s.ending != Open {
		idle = p.l.Linger
	}
	next := idle / 8
	if p.l.Duration > 0 {
		left := time.Duration(s.start + int64(p.l.Duration) - now)
		if idle == 0 || left < next {
			next = max(left, 1)
		}
	}
	return next
}

// SweepEvery is how often an engine that sweeps all its sessions at once
// looks at their time limits, when some are finishing or not: a sixteenth
// of the shortest, at most a second, so progress is seen and a limit
// enforced each at most that late: an eighth in all. Zero: no time limits.
func (p *Policy) SweepEvery(finishing bool) time.Duration {
	shortest := time.Duration(0)
	limits := []time.Duration{p.l.Idle, p.l.Duration}
	if finishing || p.l.Bytes > 0 {
		limits = append(limits, p.l.Linger)
	}
	for _, d := range limits {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	if shortest == 0 {
		return 0
	}
	return min(max(shortest/16, time.Millisecond), time.Second)
}
