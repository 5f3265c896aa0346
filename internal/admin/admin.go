// Package admin serves echod's operations endpoints over HTTP: Prometheus
// metrics at /metrics, liveness at /healthz and readiness at /readyz. It
// knows nothing of echo servers; it reports the Snapshot its stats function
// returns at each scrape, so the hot path pays nothing for metrics it does
// not already count.
package admin

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Snapshot is what the server reports at a scrape. Counters only grow.
type Snapshot struct {
	// ConnectionsActive is the number of connections open now that hold a
	// place under the server's connection limits: TCP and TLS, and HTTP
	// and HTTPS (WebSockets included).
	ConnectionsActive int
	// ConnectionsTotal counts the TCP and TLS connections accepted and
	// served (not those refused by a limit).
	ConnectionsTotal uint64
	// TCPBytesIn and TCPBytesOut count the bytes TCP and TLS clients sent
	// and were sent back (TLS: the plaintext).
	TCPBytesIn, TCPBytesOut uint64
	// UDPDatagramsIn counts the datagrams received, UDPDatagramsOut those
	// echoed; UDPBytesIn and UDPBytesOut their payload bytes.
	UDPDatagramsIn, UDPDatagramsOut uint64
	UDPBytesIn, UDPBytesOut         uint64
	// WebSocketsActive is the number of WebSocket connections open now;
	// WebSocketsTotal counts those upgraded. WebSocketMessages counts the
	// messages echoed, WebSocketBytes their bytes (one way).
	WebSocketsActive                   int
	WebSocketsTotal, WebSocketMessages uint64
	WebSocketBytes                     uint64
	// HTTPRequests counts the HTTP requests echoed.
	HTTPRequests uint64
	// AcceptErrors counts failed accepts that were retried, such as for
	// running out of file descriptors.
	AcceptErrors uint64
	// EgressBudgetBytes is the egress budget per period (zero: none),
	// EgressUsedBytes what was sent in the current period, and
	// EgressStage how far into the budget it is: 0 normal, 1 slowed to
	// the budget's average rate, 2 spent (new sessions refused).
	EgressBudgetBytes, EgressUsedBytes int64
	EgressStage                        int
	// BandwidthThrottled is the total of the waits the bandwidth budgets
	// imposed, summed over connections; BandwidthAddresses the number of
	// client addresses whose budget is tracked now.
	BandwidthThrottled time.Duration
	BandwidthAddresses int
	// Rejected counts, by reason, the connections refused or ended by a
	// limit and the datagrams dropped. Every reason the server knows
	// should be present, zeros included, so that rates start at zero.
	Rejected map[string]uint64
}

// Handler serves /metrics, /healthz and /readyz. It starts not ready.
type Handler struct {
	stats func() Snapshot
	ready atomic.Bool
	mux   *http.ServeMux
}

// NewHandler returns a Handler that calls stats at each scrape of /metrics.
func NewHandler(stats func() Snapshot) *Handler {
	h := &Handler{stats: stats, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /metrics", h.serveMetrics)
	h.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		// Alive is all this says: the process answers HTTP.
		io.WriteString(w, "ok\n")
	})
	h.mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready\n")
			return
		}
		io.WriteString(w, "ready\n")
	})
	return h
}

// SetReady sets what /readyz answers: 200 when ready, 503 when not, such as
// before the listeners are open and from the moment a drain starts, so that
// load balancers stop sending new connections.
func (h *Handler) SetReady(ready bool) { h.ready.Store(ready) }

// ServeHTTP serves the endpoints.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s := h.stats()
	ready := 0
	if h.ready.Load() {
		ready = 1
	}
	family(w, "echod_ready", "gauge", "1 when echod accepts new connections, 0 before it starts and while it drains.")
	fmt.Fprintf(w, "echod_ready %d\n", ready)
	family(w, "echod_connections_active", "gauge", "Connections open now, each holding a place under -max-conns: TCP, TLS, HTTP and HTTPS (WebSockets included).")
	fmt.Fprintf(w, "echod_connections_active %d\n", s.ConnectionsActive)
	family(w, "echod_connections_total", "counter", "TCP and TLS connections accepted and served.")
	fmt.Fprintf(w, "echod_connections_total %d\n", s.ConnectionsTotal)
	family(w, "echod_bytes_total", "counter", "Payload bytes received (direction=in) and echoed (direction=out).")
	fmt.Fprintf(w, "echod_bytes_total{proto=\"tcp\",direction=\"in\"} %d\n", s.TCPBytesIn)
	fmt.Fprintf(w, "echod_bytes_total{proto=\"tcp\",direction=\"out\"} %d\n", s.TCPBytesOut)
	fmt.Fprintf(w, "echod_bytes_total{proto=\"udp\",direction=\"in\"} %d\n", s.UDPBytesIn)
	fmt.Fprintf(w, "echod_bytes_total{proto=\"udp\",direction=\"out\"} %d\n", s.UDPBytesOut)
	fmt.Fprintf(w, "echod_bytes_total{proto=\"websocket\",direction=\"in\"} %d\n", s.WebSocketBytes)
	fmt.Fprintf(w, "echod_bytes_total{proto=\"websocket\",direction=\"out\"} %d\n", s.WebSocketBytes)
	family(w, "echod_websocket_connections_active", "gauge", "WebSocket connections open now.")
	fmt.Fprintf(w, "echod_websocket_connections_active %d\n", s.WebSocketsActive)
	family(w, "echod_websocket_connections_total", "counter", "WebSocket connections upgraded.")
	fmt.Fprintf(w, "echod_websocket_connections_total %d\n", s.WebSocketsTotal)
	family(w, "echod_websocket_messages_total", "counter", "WebSocket messages echoed.")
	fmt.Fprintf(w, "echod_websocket_messages_total %d\n", s.WebSocketMessages)
	family(w, "echod_http_requests_total", "counter", "HTTP requests echoed (not upgrades, not the page).")
	fmt.Fprintf(w, "echod_http_requests_total %d\n", s.HTTPRequests)
	family(w, "echod_udp_datagrams_total", "counter", "UDP datagrams received (direction=in) and echoed (direction=out).")
	fmt.Fprintf(w, "echod_udp_datagrams_total{direction=\"in\"} %d\n", s.UDPDatagramsIn)
	fmt.Fprintf(w, "echod_udp_datagrams_total{direction=\"out\"} %d\n", s.UDPDatagramsOut)
	family(w, "echod_accept_errors_total", "counter", "Failed accepts that were retried, such as for too many open files.")
	fmt.Fprintf(w, "echod_accept_errors_total %d\n", s.AcceptErrors)
	family(w, "echod_egress_budget_bytes", "gauge", "The egress budget per period (-egress-budget); 0: none.")
	fmt.Fprintf(w, "echod_egress_budget_bytes %d\n", s.EgressBudgetBytes)
	family(w, "echod_egress_used_bytes", "gauge", "Bytes sent in the egress budget's current period; back to 0 when it renews.")
	fmt.Fprintf(w, "echod_egress_used_bytes %d\n", s.EgressUsedBytes)
	family(w, "echod_egress_stage", "gauge", "0 normal, 1 slowed to the budget's average rate (90% spent), 2 spent: new sessions refused.")
	fmt.Fprintf(w, "echod_egress_stage %d\n", s.EgressStage)
	family(w, "echod_bandwidth_throttled_seconds_total", "counter", "Time echo waited for the bandwidth budgets, summed over connections.")
	fmt.Fprintf(w, "echod_bandwidth_throttled_seconds_total %g\n", s.BandwidthThrottled.Seconds())
	family(w, "echod_bandwidth_addresses", "gauge", "Client addresses whose bandwidth budget is tracked now.")
	fmt.Fprintf(w, "echod_bandwidth_addresses %d\n", s.BandwidthAddresses)
	family(w, "echod_rejected_total", "counter", "Connections refused or ended by a limit, and datagrams dropped, by reason.")
	reasons := make([]string, 0, len(s.Rejected))
	for r := range s.Rejected {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "echod_rejected_total{reason=%q} %d\n", r, s.Rejected[r])
	}
	// go_* (goroutines, memory, GC) and process_* (CPU, resident memory,
	// open file descriptors), named as Prometheus' own Go client names them.
	metrics.WriteProcessMetrics(w)
	metrics.WriteFDMetrics(w)
}

func family(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}
