package bench

import (
	"fmt"
	"time"
)

// Result is what a run measured. Rates cover the measured window only (not
// the warm-up); errors and mismatches cover the whole run.
type Result struct {
	Mode  Mode    `json:"mode"`
	Addr  string  `json:"addr"`
	Conns int     `json:"conns"`
	Depth int     `json:"depth"`
	Size  int     `json:"size"`
	Unit  string  `json:"unit"`           // what Ops counts: message, byte, session, connection or datagram
	Rate  float64 `json:"rate,omitempty"` // scheduled messages per second (Config.Rate)
	// URL is the server's tls://, ws:// or wss:// URL; empty over TCP
	// and UDP. MessageType is a WebSocket run's.
	URL         string      `json:"url,omitempty"`
	MessageType MessageType `json:"message_type,omitempty"`
	// RampTo is the rate a ramp ended at (Config.RampTo).
	RampTo float64 `json:"rate_to,omitempty"`

	Duration  time.Duration `json:"-"`
	Seconds   float64       `json:"seconds"`     // the measured window (Idle: the hold)
	Ops       int64         `json:"ops"`         // verified messages, bytes, sessions, connections or datagrams
	Bytes     int64         `json:"bytes"`       // verified echoed bytes
	OpsPerSec float64       `json:"ops_per_sec"` // Idle: connections opened per second
	MBPerSec  float64       `json:"mb_per_sec"`  // verified echo, in 10^6 bytes per second each way
	Latency   *Latency      `json:"latency,omitempty"`
	// Histogram is every latency of the measured window, in HdrHistogram's
	// compressed V2 encoding (base64), so that shards' results can be
	// merged exactly and other HdrHistogram tools can read it.
	Histogram string `json:"histogram,omitempty"`

	// Schedule is what a run with a rate measured besides Latency, which
	// then counts from each message's scheduled send time.
	Schedule *Schedule `json:"schedule,omitempty"`
	// Steps has a row per step of a run in steps (Config.Steps) or of a
	// search (FindMaxRate), whose figures the Result adds up.
	Steps []Step `json:"steps,omitempty"`
	// Search is what FindMaxRate found.
	Search *RateSearch `json:"find_max_rate,omitempty"`

	Errors        int64            `json:"errors"` // connection errors: refused, reset, timed out, closed early
	ErrorsByKind  map[string]int64 `json:"errors_by_kind,omitempty"`
	FirstError    string           `json:"first_error,omitempty"`
	Mismatches    int64            `json:"mismatches"` // replies that differ from what was sent
	FirstMismatch *Mismatch        `json:"first_mismatch,omitempty"`

	Idle   *IdleStats `json:"idle,omitempty"`
	UDP    *UDPStats  `json:"udp,omitempty"`
	Server *Server    `json:"server,omitempty"` // with Config.PID

	// Hints explain losses and errors that look like the server's own
	// limits, such as a UDP rate limit.
	Hints []string `json:"hints,omitempty"`

	// Start is when the measured window opened; Series cuts it into
	// seconds (not for Idle).
	Start  time.Time `json:"start,omitzero"`
	Series []Second  `json:"series,omitempty"`

	// Shard is "I/N" for one of N shards of a run (see Config.Shard),
	// Host the machine it ran on; Shards has one row per shard in a
	// result merged from them.
	Shard  string       `json:"shard,omitempty"`
	Host   string       `json:"host,omitempty"`
	Shards []ShardStats `json:"shards,omitempty"`

	// Missed says which of the thresholds given to Thresholds.Apply the
	// run missed, and by how much.
	Missed []string `json:"thresholds_missed,omitempty"`

	// Interrupted is set when the run was stopped (its context was done)
	// before its duration or count was reached.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Latency summarizes the latencies of a run, in nanoseconds in JSON.
type Latency struct {
	Count int64         `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p99_9_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Schedule is what a run on a schedule (Config.Rate) measured besides its
// latency from each message's scheduled send.
type Schedule struct {
	// Behind counts the messages sent later than Slack after their
	// scheduled time: held back by the depth, a server that stopped
	// reading, or a load generator that cannot keep up.
	Behind int64         `json:"behind"`
	Slack  time.Duration `json:"slack_ns"`
	// LatencyFromSend is each message's latency from its actual send
	// rather than its scheduled one: the server's part, without the wait
	// to be sent. HistogramFromSend is its histogram, encoded as
	// Result.Histogram is.
	LatencyFromSend   *Latency `json:"latency_from_send,omitempty"`
	HistogramFromSend string   `json:"histogram_from_send,omitempty"`
}

// Step is one step's row in a run in steps or a search for the highest
// rate.
type Step struct {
	Rate            float64  `json:"rate"` // scheduled messages per second
	Seconds         float64  `json:"seconds"`
	Ops             int64    `json:"ops"`
	OpsPerSec       float64  `json:"ops_per_sec"`
	Latency         *Latency `json:"latency,omitempty"` // from the scheduled sends
	LatencyFromSend *Latency `json:"latency_from_send,omitempty"`
	Behind          int64    `json:"behind"`
	Errors          int64    `json:"errors"`
	Mismatches      int64    `json:"mismatches"`
	// Missed, in a search, lists the thresholds this step missed: its
	// rate was too high.
	Missed []string `json:"thresholds_missed,omitempty"`
	// The step's latency histograms, encoded as Result.Histogram is, so
	// that bench merge can add up shards' steps exactly.
	Histogram         string `json:"histogram,omitempty"`
	HistogramFromSend string `json:"histogram_from_send,omitempty"`
}

// RateSearch is the outcome of FindMaxRate.
type RateSearch struct {
	// Rate is the highest rate tried that met the thresholds; 0 if none
	// did. Over is the lowest that did not; 0 if all did.
	Rate float64 `json:"rate"`
	Over float64 `json:"lowest_over,omitempty"`
	// Thresholds names the limits searched within, such as "p99 5ms".
	Thresholds string `json:"thresholds"`
}

// Mismatch describes the first reply that differed from what was sent.
type Mismatch struct {
	Conn   int    `json:"conn"`   // which connection (worker), from 0
	Offset int64  `json:"offset"` // byte offset in that connection's stream, session or datagram
	Got    int    `json:"got"`    // the byte received, or -1 when the reply's length was wrong
	Want   int    `json:"want"`   // the byte sent, or -1
	Text   string `json:"error"`
}

// IdleStats are the Idle mode's counts.
type IdleStats struct {
	Opened      int64   `json:"opened"`       // connections opened and echoed one byte
	OpenSeconds float64 `json:"open_seconds"` // how long opening them took
	Served      int64   `json:"served"`       // of those, still echoing after the hold
}

// UDPStats are the UDP mode's counts over the measured window.
type UDPStats struct {
	Sent int64 `json:"sent"`
	Lost int64 `json:"lost"` // no echo within the loss timeout
	Late int64 `json:"late"` // echoes that came after being counted lost, or twice
}

// Server is what was observed of the server process (Config.PID) over the
// measured window.
type Server struct {
	PID          int     `json:"pid"`
	CPUSeconds   float64 `json:"cpu_seconds"`             // user + system, 10 ms resolution
	CPUPerOpNs   float64 `json:"cpu_per_op_ns,omitempty"` // CPUSeconds per unit of Ops
	RSSBefore    int64   `json:"rss_before"`              // resident bytes
	RSSAfterOpen int64   `json:"rss_after_open,omitempty"`
	RSSAfter     int64   `json:"rss_after"`
	RSSPerConn   float64 `json:"rss_per_conn,omitempty"` // Idle: (RSSAfter-RSSBefore)/Opened
	Error        string  `json:"error,omitempty"`        // why the figures are missing, if they are
}

// Err reports whether the run found the server wanting: a reply that
// differed from what was sent, a connection error, or nothing echoed at
// all. It is nil for a clean run.
func (r *Result) Err() error { return r.fault(true) }

// fault is Err, counting connection errors only if errs is set.
func (r *Result) fault(errs bool) error {
	switch {
	case r.Mismatches > 0 && r.FirstMismatch == nil: // a result read from a file may lack it
		return fmt.Errorf("%d %s differed from what was sent", r.Mismatches, plural(r.Mismatches, "reply", "replies"))
	case r.Mismatches > 0:
		return fmt.Errorf("%d %s differed from what was sent; the first, on connection %d: %s",
			r.Mismatches, plural(r.Mismatches, "reply", "replies"), r.FirstMismatch.Conn, r.FirstMismatch.Text)
	case errs && r.Errors > 0:
		return fmt.Errorf("%d connection %s; the first: %s", r.Errors, plural(r.Errors, "error", "errors"), r.FirstError)
	case r.Idle != nil && r.Idle.Served < r.Idle.Opened && !r.Interrupted:
		return fmt.Errorf("%d of %d idle connections were no longer served after the hold", r.Idle.Opened-r.Idle.Served, r.Idle.Opened)
	case r.Ops == 0 && !r.Interrupted:
		return fmt.Errorf("nothing was echoed in %v", r.Duration.Round(time.Millisecond))
	}
	return nil
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
