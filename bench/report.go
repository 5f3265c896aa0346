package bench

import (
	"cmp"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes r as an aligned table for people.
func (r *Result) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) {
		fmt.Fprintf(tw, "  %s:\t%s\n", name, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(tw, "Summary:\n")
	row("Mode", "%s", r.describe())
	row("Server", "%s", cmp.Or(r.URL, r.Addr))
	if r.Shard != "" {
		row("Shard", "%s of the run, on %s", r.Shard, orDash(r.Host))
	}
	switch {
	case r.Idle != nil:
		row("Connections", "%d opened and echoed one byte in %s (%.0f/s)", r.Idle.Opened, seconds(r.Idle.OpenSeconds), r.OpsPerSec)
		row("Held", "%s, then %d still echoed", seconds(r.Seconds), r.Idle.Served)
	case r.Mode == Bulk:
		row("Duration", "%s", seconds(r.Seconds))
		row("Echoed", "%d bytes, verified", r.Bytes)
		row("Throughput", "%.1f MB/s each way", r.MBPerSec)
	default:
		row("Duration", "%s", seconds(r.Seconds))
		row(title(r.Unit)+"s", "%d verified (%.1f/s)", r.Ops, r.OpsPerSec)
		row("Throughput", "%.2f MB/s each way", r.MBPerSec)
	}
	if sc := r.Schedule; sc != nil {
		row("Behind schedule", "%d of %d %s sent more than %s after their scheduled time", sc.Behind, r.Ops,
			plural(r.Ops, "message", "messages"), duration(sc.Slack))
	}
	if r.UDP != nil {
		row("Sent", "%d datagrams, %d lost, %d late", r.UDP.Sent, r.UDP.Lost, r.UDP.Late)
	}
	row("Errors", "%s", r.errorText())
	row("Mismatches", "%s", r.mismatchText())
	if r.Interrupted {
		row("Interrupted", "stopped before the end; figures cover the time measured")
	}
	for _, h := range r.Hints {
		row("Hint", "%s", h)
	}

	if l := r.Latency; l != nil {
		r.writeLatency(tw, l)
	}
	if len(r.Steps) > 0 {
		r.writeSteps(tw)
	}

	if len(r.Shards) > 0 {
		fmt.Fprintf(tw, "\nShards (%d):\n", len(r.Shards))
		fmt.Fprintf(tw, "  shard\thost\tconns\t%ss/s\tp50\tp99\terrors\tmismatches\n", r.Unit)
		for _, s := range r.Shards {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%.1f\t%s\t%s\t%d\t%d\n", s.Shard, orDash(s.Host), s.Conns, s.OpsPerSec,
				duration(s.P50), duration(s.P99), s.Errors, s.Mismatches)
		}
	}

	if s := r.Server; s != nil {
		fmt.Fprintf(tw, "\nServer process %d:\n", s.PID)
		if s.Error != "" {
			row("Not observed", "%s", s.Error)
		} else {
			if r.Seconds > 0 && r.Idle == nil {
				row("CPU time", "%s (%.0f%% of one CPU)", seconds(s.CPUSeconds), 100*s.CPUSeconds/r.Seconds)
			} else {
				row("CPU time", "%s", seconds(s.CPUSeconds))
			}
			if s.CPUPerOpNs > 0 {
				row("CPU per "+r.Unit, "%s", perOp(s.CPUPerOpNs))
			}
			if r.Idle != nil {
				row("Resident memory", "%s before, %s after opening, %s after the hold", mib(s.RSSBefore), mib(s.RSSAfterOpen), mib(s.RSSAfter))
				row("Per connection", "%.0f bytes", s.RSSPerConn)
			} else {
				row("Resident memory", "%s before, %s after", mib(s.RSSBefore), mib(s.RSSAfter))
			}
		}
	}
	if len(r.Missed) > 0 {
		fmt.Fprintf(tw, "\nThresholds missed:\n")
		for _, m := range r.Missed {
			fmt.Fprintf(tw, "  %s\n", m)
		}
	}
	return tw.Flush()
}

// writeLatency writes the latency percentiles, from the scheduled and from
// the actual sends side by side for a run on a schedule.
func (r *Result) writeLatency(w io.Writer, l *Latency) {
	var fromSend *Latency
	if r.Schedule != nil {
		fromSend = r.Schedule.LatencyFromSend
	}
	fmt.Fprintf(w, "\nLatency (%s, %d samples):\n", r.latencyMeaning(), l.Count)
	if fromSend != nil {
		fmt.Fprintf(w, "  \tfrom scheduled send\tfrom actual send\n")
	}
	for _, p := range []struct {
		name string
		d    func(*Latency) time.Duration
	}{
		{"p50", func(l *Latency) time.Duration { return l.P50 }},
		{"p90", func(l *Latency) time.Duration { return l.P90 }},
		{"p99", func(l *Latency) time.Duration { return l.P99 }},
		{"p99.9", func(l *Latency) time.Duration { return l.P999 }},
		{"max", func(l *Latency) time.Duration { return l.Max }},
		{"mean", func(l *Latency) time.Duration { return l.Mean }},
	} {
		if fromSend != nil {
			fmt.Fprintf(w, "  %s\t%s\t%s\n", p.name, duration(p.d(l)), duration(p.d(fromSend)))
		} else {
			fmt.Fprintf(w, "  %s\t%s\n", p.name, duration(p.d(l)))
		}
	}
}

// writeSteps writes a row per step of a run in steps or of a search, and
// what the search found.
func (r *Result) writeSteps(w io.Writer) {
	fmt.Fprintf(w, "\nSteps (%d; latency from the scheduled send, p99 also from the actual send):\n", len(r.Steps))
	fmt.Fprintf(w, "  rate/s\tverified/s\tp50\tp99\tp99.9\tp99 from send\tbehind\terrors\tmismatches")
	if r.Search != nil {
		fmt.Fprintf(w, "\twithin")
	}
	fmt.Fprintln(w)
	for _, s := range r.Steps {
		var p50, p99, p999, p99s string = "-", "-", "-", "-"
		if l := s.Latency; l != nil {
			p50, p99, p999 = duration(l.P50), duration(l.P99), duration(l.P999)
		}
		if l := s.LatencyFromSend; l != nil {
			p99s = duration(l.P99)
		}
		fmt.Fprintf(w, "  %s\t%.1f\t%s\t%s\t%s\t%s\t%d\t%d\t%d", perSecond(s.Rate), s.OpsPerSec, p50, p99, p999, p99s, s.Behind, s.Errors, s.Mismatches)
		if r.Search != nil {
			within := "yes"
			if len(s.Missed) > 0 || s.Mismatches > 0 {
				within = "no"
			}
			fmt.Fprintf(w, "\t%s", within)
		}
		fmt.Fprintln(w)
	}
	if s := r.Search; s != nil {
		fmt.Fprintf(w, "\nMax rate: %s\n", s.line(len(r.Steps)))
	}
}

// line says what a search found, in one line.
func (s *RateSearch) line(steps int) string {
	switch {
	case s.Rate == 0:
		return fmt.Sprintf("none found; every rate tried missed %s", s.Thresholds)
	case s.Over == 0:
		return fmt.Sprintf("%s/s within %s, the highest tried (%d steps): every rate tried met them; start higher with -rate", perSecond(s.Rate), s.Thresholds, steps)
	}
	return fmt.Sprintf("%s/s within %s (%s/s missed them; %d steps)", perSecond(s.Rate), s.Thresholds, perSecond(s.Over), steps)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (r *Result) describe() string {
	d := r.describeMode()
	if r.MessageType != "" {
		d += fmt.Sprintf(", %s WebSocket messages", r.MessageType)
	}
	return d
}

func (r *Result) describeMode() string {
	switch r.Mode {
	case Idle:
		return fmt.Sprintf("idle, %d connections", r.Conns)
	case Bulk:
		return fmt.Sprintf("bulk, %d %s, %d-byte writes", r.Conns, plural(int64(r.Conns), "connection", "connections"), r.Size)
	case Cycle:
		return fmt.Sprintf("cycle, %d at once, %d bytes per session", r.Conns, r.Size)
	case UDP:
		return fmt.Sprintf("udp, %d %s, depth %d, %d-byte datagrams", r.Conns, plural(int64(r.Conns), "socket", "sockets"), r.Depth, r.Size)
	default:
		d := fmt.Sprintf("%s, %d %s, depth %d, %d-byte messages", r.Mode, r.Conns, plural(int64(r.Conns), "connection", "connections"), r.Depth, r.Size)
		switch {
		case r.Search != nil:
			d += ", searching for the highest rate"
		case len(r.Steps) > 0:
			rates := make([]float64, len(r.Steps))
			for i, s := range r.Steps {
				rates[i] = s.Rate
			}
			d += ", " + describeRate(0, 0, rates) + " scheduled"
		case r.Rate > 0:
			d += ", " + describeRate(r.Rate, r.RampTo, nil) + " scheduled"
		}
		return d
	}
}

func (r *Result) latencyMeaning() string {
	switch r.Mode {
	case Cycle:
		switch {
		case strings.HasPrefix(r.URL, "tls:"):
			return "per session, connect and TLS handshake to EOF"
		case r.MessageType != "":
			return "per session, connect and upgrade to the server's close"
		}
		return "per session, connect to EOF"
	case Idle:
		return "first one-byte echo per connection"
	case UDP:
		return "round trip per datagram"
	default:
		if r.Schedule != nil {
			return "per message, to its echo"
		}
		return "round trip per message"
	}
}

func (r *Result) errorText() string {
	if r.Errors == 0 {
		return "0"
	}
	kinds := make([]string, 0, len(r.ErrorsByKind))
	for k := range r.ErrorsByKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, r.ErrorsByKind[k])
	}
	return fmt.Sprintf("%d (%s); first: %s", r.Errors, strings.Join(parts, ", "), r.FirstError)
}

func (r *Result) mismatchText() string {
	if r.Mismatches == 0 || r.FirstMismatch == nil {
		return fmt.Sprint(r.Mismatches)
	}
	return fmt.Sprintf("%d; first on connection %d: %s", r.Mismatches, r.FirstMismatch.Conn, r.FirstMismatch.Text)
}

func title(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func seconds(s float64) string { return fmt.Sprintf("%.2fs", s) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// duration prints d with three significant digits in a unit that suits it.
func duration(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// perOp prints a CPU time per operation given in nanoseconds.
func perOp(ns float64) string {
	if ns < 1000 {
		return fmt.Sprintf("%.2fns", ns)
	}
	return duration(time.Duration(ns))
}
