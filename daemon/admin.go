package daemon

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/admin"
	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/web"
)

// snapshot gathers what /metrics reports: the echo server's counters and
// the rejections of the PROXY protocol listeners, every reason present.
func (d *daemon) snapshot() admin.Snapshot {
	st := d.cfg.Server.Stats()
	s := admin.Snapshot{
		ConnectionsActive: st.Conns,
		ConnectionsTotal:  st.Accepted,
		TCPBytesIn:        st.TCPBytesIn,
		TCPBytesOut:       st.TCPBytesOut,
		UDPDatagramsIn:    st.UDPDatagrams,
		UDPDatagramsOut:   st.UDPReplies,
		UDPBytesIn:        st.UDPBytesIn,
		UDPBytesOut:       st.UDPBytesOut,
		AcceptErrors:      st.AcceptErrors,
		Rejected:          make(map[string]uint64, len(st.Limited)+3),
	}
	for r, n := range st.Limited {
		s.Rejected[r.String()] = n
	}
	var header, untrusted, pending uint64
	for _, p := range d.proxies {
		ps := p.Stats()
		header += ps.Header
		untrusted += ps.Untrusted
		pending += ps.Pending
	}
	s.Rejected[proxied.ReasonHeader] = header
	s.Rejected[proxied.ReasonUntrusted] = untrusted
	s.Rejected[proxied.ReasonPending] = pending
	var ws web.Stats // zeros without web echo, so that rates start at zero
	if d.web != nil {
		ws = d.web.handler.Stats()
		// Web connections hold places under -max-conns as TCP ones do.
		s.ConnectionsActive += int(d.web.conns.Load())
	}
	s.WebSocketsActive, s.WebSocketsTotal = ws.WebSockets, ws.WebSocketsTotal
	s.WebSocketMessages, s.WebSocketBytes = ws.Messages, ws.MessageBytes
	s.HTTPRequests = ws.Requests
	s.Rejected[web.ReasonMaxMessage] = ws.TooBig
	// A WebSocket's session limits are the echo's, under the same names.
	s.Rejected[echo.ReasonMaxSessionDuration.String()] += ws.SessionDuration
	s.Rejected[echo.ReasonMaxSessionBytes.String()] += ws.SessionBytes
	bw := d.bandwidth.Stats(time.Now())
	s.EgressBudgetBytes, s.EgressUsedBytes, s.EgressStage = bw.Budget.Bytes, bw.Used, int(bw.Stage)
	s.BandwidthThrottled, s.BandwidthAddresses = bw.Throttled, bw.Addresses
	return s
}

// adminServer serves the admin endpoints on their own listener.
type adminServer struct {
	handler *admin.Handler
	http    *http.Server
}

// startAdmin serves the admin endpoints, if asked for, in g until stop, and
// marks the daemon ready: every listener is open, and the kernel queues
// connections from now on.
func (d *daemon) startAdmin(g *errgroup.Group) *adminServer {
	if d.admin == nil {
		return nil
	}
	a := &adminServer{handler: admin.NewHandler(d.snapshot)}
	a.http = &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	g.Go(func() error { return ignoreClosed(a.http.Serve(d.admin)) })
	// Ready before the log line, so that whoever reads the line and asks
	// /readyz is told the truth.
	a.setReady(true)
	d.log.Info("listening", "proto", "http", "addr", d.admin.Addr().String(), "serves", "/metrics /healthz /readyz")
	return a
}

// setReady sets what /readyz answers, if the admin endpoints are served.
func (a *adminServer) setReady(ready bool) {
	if a != nil {
		a.handler.SetReady(ready)
	}
}

// stop ends the admin server, letting a scrape in progress finish for a
// moment.
func (a *adminServer) stop() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		a.http.Close()
	}
}
