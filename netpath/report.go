package netpath

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// Report is what Run found. A measurement that was not made is nil; one
// that failed says why in its Err.
type Report struct {
	Target    string     `json:"target"`
	Transport string     `json:"transport"`
	Connect   *Timing    `json:"connect,omitempty"`
	TLS       *TLSInfo   `json:"tls,omitempty"`
	RTT       *RTT       `json:"rtt,omitempty"`
	Integrity *Integrity `json:"integrity,omitempty"`
	Datagrams *Datagrams `json:"datagrams,omitempty"`
	// Throughput and HalfClose are for streams (TCP, TLS; WebSocket has
	// no half-close).
	Throughput *Throughput `json:"throughput,omitempty"`
	HalfClose  *HalfClose  `json:"half_close,omitempty"`
	Idle       *Idle       `json:"idle,omitempty"`
	Server     *Server     `json:"server,omitempty"`
	// Findings are the report in words, one line each, in the order made.
	Findings []Finding `json:"findings"`

	mu       sync.Mutex
	progress func(Finding)
}

// Finding is one thing the path does, in plain words.
type Finding struct {
	// Topic is what the finding is about: "round trip", "throughput",
	// "half-close", "idle", "tampering" and so on.
	Topic string `json:"topic"`
	Text  string `json:"text"`
}

// part is a measurement that words its own findings.
type part interface {
	findings(r *Report) []Finding
}

// set records a measurement with apply, and its findings, under the
// report's lock, telling each finding to the progress function.
func (r *Report) set(p part, apply func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	apply()
	for _, f := range p.findings(r) {
		// A finding is one line, whatever an error it quotes holds.
		f.Text = strings.Join(strings.Fields(f.Text), " ")
		r.Findings = append(r.Findings, f)
		if r.progress != nil {
			r.progress(f)
		}
	}
}

// WriteText writes the findings, one a line, after a line naming the
// target.
func (r *Report) WriteText(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "path to %s\n", r.Target); err != nil {
		return err
	}
	for _, f := range r.Findings {
		if err := f.WriteText(w); err != nil {
			return err
		}
	}
	return nil
}

// WriteText writes f as one line: its topic, then its text.
func (f Finding) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%-11s %s\n", f.Topic+":", f.Text)
	return err
}

// WriteJSON writes the report as one JSON object. Durations are in
// nanoseconds, rates in bytes a second.
func (r *Report) WriteJSON(w io.Writer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (t *Timing) findings(*Report) []Finding {
	if t.Upgrade > 0 {
		return []Finding{{"connect", fmt.Sprintf("%s to a WebSocket (TCP connect, TLS if any, and the upgrade)", ms(t.Upgrade))}}
	}
	return []Finding{{"connect", fmt.Sprintf("%s (the TCP handshake: about one round trip)", ms(t.Connect))}}
}

func (ti *TLSInfo) findings(*Report) []Finding {
	alpn := ti.ALPN
	if alpn == "" {
		alpn = "none"
	}
	text := fmt.Sprintf("%s, %s, ALPN %s", ti.Version, ti.Cipher, alpn)
	if ti.Handshake > 0 { // a WebSocket's is part of its connect time
		text += "; handshake " + ms(ti.Handshake)
	}
	fs := []Finding{{"tls", text}}
	for i, c := range ti.Chain {
		left := time.Until(c.NotAfter)
		in := fmt.Sprintf("%d days", int(left.Hours()/24))
		if left < 48*time.Hour {
			in = fmt.Sprintf("%d hours", int(left.Hours()))
		}
		when := fmt.Sprintf("expires %s (in %s)", c.NotAfter.UTC().Format("2006-01-02 15:04 MST"), in)
		if left < 0 {
			when = fmt.Sprintf("EXPIRED on %s", c.NotAfter.UTC().Format("2006-01-02"))
		}
		text := fmt.Sprintf("%d. %s, issued by %s, %s", i+1, c.Subject, c.Issuer, when)
		if i == 0 && !ti.Verified {
			text += "; not verified (give -ca FILE to verify it)"
		}
		fs = append(fs, Finding{"certificate", text})
	}
	return fs
}

func (rt *RTT) findings(r *Report) []Finding {
	if rt.Echoes == 0 {
		return []Finding{{"round trip", fmt.Sprintf("no echo: %s; nothing further can be measured", rt.Err)}}
	}
	text := fmt.Sprintf("min %s, p50 %s, p99 %s, max %s, jitter %s (%s of %d bytes, one at a time)",
		ms(rt.Min), ms(rt.P50), ms(rt.P99), ms(rt.Max), ms(rt.Jitter), plural(rt.Echoes, "echo", "echoes"), echoSize)
	if rt.Lost > 0 {
		text += fmt.Sprintf("; %d of %d lost", rt.Lost, rt.Lost+rt.Echoes)
	}
	if rt.Err != "" {
		text += "; then " + rt.Err
	}
	fs := []Finding{{"round trip", text}}
	if c := r.Connect; c != nil && c.Upgrade == 0 && rt.Min > 5*time.Millisecond && 4*c.Connect < rt.Min {
		fs = append(fs, Finding{"proxy", fmt.Sprintf("the TCP handshake (%s) ends much nearer than the echo (min %s): a proxy or tunnel accepts the connection itself and opens its own to the server", ms(c.Connect), ms(rt.Min))})
	}
	return fs
}

func (tp *Throughput) findings(r *Report) []Finding {
	if tp.One == 0 {
		return []Finding{{"throughput", "not measured: " + tp.Err}}
	}
	fs := []Finding{{"throughput", fmt.Sprintf("%s each way on one connection, every byte verified (an echo carries the same bytes both ways: this is the slower direction, or the server if slower still)", rate(tp.One))}}
	if tp.Two == 0 {
		return append(fs, Finding{"limit", "not measured: " + tp.Err})
	}
	var text string
	switch tp.Limit {
	case "shared":
		text = "a shared limit: the path's bandwidth, or the server's total"
	case "per-connection":
		text = "a limit per connection, not the path's bandwidth: TCP's window over this round trip, or the server's pace for each connection"
	default:
		text = "between a shared limit and one per connection"
	}
	if tp.Limit == "shared" && r.RTT != nil && r.RTT.Echoes > 0 && r.RTT.P50 < time.Millisecond {
		text += "; on a round trip this short, most likely the machines (server or client) rather than a network"
	}
	fs = append(fs, Finding{"limit", fmt.Sprintf("%s: two connections together get %s, %.2f× one (%s)", text, rate(tp.Two), tp.Ratio, tp.Sure)})
	return fs
}

func (hc *HalfClose) findings(*Report) []Finding {
	sent := pattern.Size(int64(hc.Sent))
	var text string
	switch hc.Outcome {
	case "half-close":
		text = fmt.Sprintf("arrives as a half-close: all %s in flight came back, then EOF %s after the half-close", sent, ms(hc.After))
	case "closed":
		how := "EOF"
		if hc.Reset {
			how = "a reset"
		}
		text = fmt.Sprintf("the connection was closed at the half-close: %s of %s in flight came back, then %s %s after it. "+
			"Something turns a half-close into a close: a proxy or tunnel (toxiproxy and several tunnels do), or the server itself; "+
			"to tell which, run 'echod check' against the server on its own machine", pattern.Size(int64(hc.Echoed)), sent, how, ms(hc.After))
	case "held":
		text = fmt.Sprintf("all %s came back, but the connection stayed open %s after the half-close: the server does not close its side after the client's (or the path withholds the EOF)", sent, ms(hc.After))
	case "stalled":
		text = fmt.Sprintf("after the half-close the echo stopped at %s of %s and the connection stayed open (%s)", pattern.Size(int64(hc.Echoed)), sent, hc.Err)
	case "changed":
		text = fmt.Sprintf("not measured: the echo differed from what was sent (%s)", hc.Err)
	default:
		text = "not measured: " + hc.Err
	}
	return []Finding{{"half-close", text}}
}

func (in *Idle) findings(r *Report) []Finding {
	what := "an idle connection"
	if r.Transport == "udp" {
		what = "an idle UDP flow"
	}
	var probes []string
	for _, p := range in.Probes {
		probes = append(probes, fmt.Sprintf("%v %s", p.Idle, p.Outcome))
	}
	tried := "probes: " + strings.Join(probes, ", ")
	var text string
	switch {
	case in.ClosedAfter > 0:
		text = fmt.Sprintf("%s is closed after %s idle, unasked, by the server or something on the path (%s)", what, secs(in.ClosedAfter), tried)
	case in.DiedBy > 0 && in.Survived > 0:
		text = fmt.Sprintf("%s dies between %v and %v idle: after %v an echo got no answer, as when a NAT or firewall forgets the connection (%s)", what, in.Survived, in.DiedBy, in.DiedBy, tried)
	case in.DiedBy > 0:
		text = fmt.Sprintf("%s dies within %v idle: after %v an echo got no answer (%s)", what, in.DiedBy, in.DiedBy, tried)
	case in.Survived > 0:
		text = fmt.Sprintf("none seen: %s still gets its echo after %v idle, the longest probed (-max-idle)", what, in.Survived)
	default:
		text = "not measured: " + in.Err
	}
	return []Finding{{"idle", text}}
}

func (in *Integrity) findings(*Report) []Finding {
	var fs []Finding
	sent := pattern.Size(int64(in.Sent))
	switch {
	case in.Garbled >= 0:
		fs = append(fs, Finding{"tampering", fmt.Sprintf("the echo of %s no longer lines up with what was sent from byte %d on: bytes reordered or mangled", sent, in.Garbled)})
	case in.First >= 0:
		var what []string
		for _, c := range []struct {
			n    int
			verb string
		}{{in.Changed, "changed"}, {in.Dropped, "dropped"}, {in.Duplicated, "duplicated"}} {
			if c.n == 1 {
				what = append(what, "1 byte "+c.verb)
			} else if c.n > 1 {
				what = append(what, fmt.Sprintf("%d bytes %s", c.n, c.verb))
			}
		}
		fs = append(fs, Finding{"tampering", fmt.Sprintf("%s in an echo of %s, the first at byte %d: something on the path alters the stream", strings.Join(what, ", "), sent, in.First)})
	case in.Err != "":
		fs = append(fs, Finding{"tampering", "not measured to the end: " + in.Err})
	default:
		fs = append(fs, Finding{"tampering", fmt.Sprintf("none: %s echoed byte for byte", sent)})
	}
	// An echo short by the bytes dropped is explained; short by more, it
	// also stopped.
	if in.Err != "" && in.First >= 0 && in.Echoed != in.Sent-in.Dropped+in.Duplicated {
		fs = append(fs, Finding{"tampering", in.Err})
	}
	switch {
	case in.Echoed < 64<<10:
		// Too little came back for the kernel's estimate to mean much.
	case in.RecvMSS > 0 && in.SendMSS > 0 && in.RecvMSS < in.SendMSS*3/4 && in.RecvMSS < 1200:
		fs = append(fs, Finding{"segments", fmt.Sprintf("the echo arrived in segments of at most %d bytes while this end sends up to %d: something on the path cuts the stream small (largest read %d bytes)", in.RecvMSS, in.SendMSS, in.LargestRead)})
	case in.RecvMSS > 0:
		fs = append(fs, Finding{"segments", fmt.Sprintf("the echo arrived in segments of up to %d bytes (this end sends up to %d; largest read %d bytes)", in.RecvMSS, in.SendMSS, in.LargestRead)})
	}
	return fs
}

func (dg *Datagrams) findings(*Report) []Finding {
	var fs []Finding
	switch {
	case dg.Largest == 0:
		fs = append(fs, Finding{"datagrams", "not measured: " + dg.Err})
	case dg.CutTo > 0:
		fs = append(fs, Finding{"datagrams", fmt.Sprintf("the largest echoed whole is %d bytes; larger ones came back cut to %d bytes: the server reads datagrams into a %d-byte buffer (or the path cuts them)", dg.Largest, dg.CutTo, dg.CutTo)})
	case dg.SmallestLost > 0:
		fs = append(fs, Finding{"datagrams", fmt.Sprintf("the largest echoed whole is %d bytes; %d bytes never came back (the path's or the server's limit)", dg.Largest, dg.SmallestLost)})
	default:
		fs = append(fs, Finding{"datagrams", fmt.Sprintf("the largest echoed whole is %d bytes, the largest tried", dg.Largest)})
	}
	if dg.Changed > 0 {
		fs = append(fs, Finding{"tampering", fmt.Sprintf("%d datagrams came back changed or of another length", dg.Changed)})
	} else if dg.Largest > 0 {
		fs = append(fs, Finding{"tampering", "none: every datagram that came back was the one sent"})
	}
	return fs
}

func (s *Server) findings(*Report) []Finding {
	if s.Err != "" {
		return []Finding{{"echod sees", fmt.Sprintf("not known: %s: %s", s.URL, s.Err)}}
	}
	var fs []Finding
	switch {
	case s.Client == s.Local:
		fs = append(fs, Finding{"echod sees", fmt.Sprintf("this client as %s, its own address: no NAT or proxy between", s.Client)})
	default:
		fs = append(fs, Finding{"echod sees", fmt.Sprintf("this client as %s while this end is %s: the address is translated on the way (a NAT, or a proxy)", s.Client, s.Local)})
	}
	if s.Peer != "" {
		fs = append(fs, Finding{"echod sees", fmt.Sprintf("the connection come from %s, which gave the client's address in a PROXY header", s.Peer)})
	}
	if t := s.TCP; t != nil {
		fs = append(fs, Finding{"echod's view", fmt.Sprintf("RTT %s (±%s), MSS %d, %d segments retransmitted (the kernel's, on echod's end of the info request's connection)",
			ms(t.RTT), ms(t.RTTVar), t.SendMSS, t.Retransmits)})
	}
	return fs
}

// ms formats d for a round trip: microseconds below 1 ms, milliseconds to
// a tenth below 10 ms, whole milliseconds above.
func ms(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(time.Millisecond).String()
}

// secs formats d to a tenth of a second.
func secs(d time.Duration) string { return d.Round(100 * time.Millisecond).String() }

// rate formats bytes a second in MB/s (10^6), as link speeds are given,
// with the bits beside.
func rate(bps float64) string {
	return fmt.Sprintf("%.2f MB/s (%.1f Mbit/s)", bps/1e6, bps*8/1e6)
}

// plural formats n of a noun.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
