package bench

import "fmt"

// udpLossHint is the share of lost datagrams above which a run suggests
// that the server limits its rate: loopback and a good LAN lose far less.
const udpLossHint = 0.05

// behindHint is the share of messages sent behind schedule above which a
// run with a rate says what that means.
const behindHint = 0.1

// hints explains losses and errors that look like the server's own limits
// rather than a fault, so that a benchmark of a protected server is not
// mistaken for a broken one.
func (r *Result) hints() []string {
	var hs []string
	if u := r.UDP; u != nil && u.Sent > 0 {
		if loss := float64(u.Lost) / float64(u.Sent); loss > udpLossHint {
			hs = append(hs, fmt.Sprintf("%.0f%% of datagrams were lost while %.0f/s came back: the server may be rate-limiting (echod serve answers at most 1000/s per source address, -udp-source-rate, and 20000/s in all, -udp-global-rate; 0 turns either off)", 100*loss, r.OpsPerSec))
		}
	}
	refused := r.ErrorsByKind["reset"] + r.ErrorsByKind["connect reset"] + r.ErrorsByKind["closed by server"]
	if r.Mode != UDP && refused > 0 && r.Ops > 0 && r.Conns > 1 {
		hs = append(hs, fmt.Sprintf("%d %s reset or closed by the server while others were served: this looks like a connection limit (echod serve's -max-conns-per-ip or -max-conns)", refused, plural(refused, "connection was", "connections were")))
	}
	if sc := r.Schedule; sc != nil && r.Ops > 0 && float64(sc.Behind) > behindHint*float64(r.Ops) {
		hs = append(hs, fmt.Sprintf("%.0f%% of messages were sent more than %s after their scheduled time: either the server is slower than the rate (the latency from the actual send is long, and each connection keeps only -depth %d in flight), or this load generator cannot keep up (use more connections, or -shard over machines)",
			100*float64(sc.Behind)/float64(r.Ops), duration(sc.Slack), r.Depth))
	}
	return hs
}
