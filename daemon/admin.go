package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/admin"
	"github.com/echod/echod/internal/proxied"
)

// snapshot gathers what /metrics reports: the echo server's counters and
// the rejections of the PROXY protocol listeners, every reason present.
func snapshot(srv *echo.Server, proxies []*proxied.Listener) admin.Snapshot {
	st := srv.Stats()
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
		Rejected:          make(map[string]uint64, len(st.Limited)+2),
	}
	for r, n := range st.Limited {
		s.Rejected[r.String()] = n
	}
	var header, untrusted uint64
	for _, p := range proxies {
		ps := p.Stats()
		header += ps.Header
		untrusted += ps.Untrusted
	}
	s.Rejected[proxied.ReasonHeader] = header
	s.Rejected[proxied.ReasonUntrusted] = untrusted
	return s
}

// adminServer serves the admin endpoints on their own listener.
type adminServer struct {
	handler *admin.Handler
	http    *http.Server
	done    chan error
}

// startAdmin serves h on l in the background until stop.
func startAdmin(l net.Listener, h *admin.Handler, logger *slog.Logger) *adminServer {
	a := &adminServer{
		handler: h,
		http: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
		done: make(chan error, 1),
	}
	go func() { a.done <- a.http.Serve(l) }()
	return a
}

// setReady sets what /readyz answers, if the admin endpoints are served.
func (a *adminServer) setReady(ready bool) {
	if a != nil {
		a.handler.SetReady(ready)
	}
}

// stop ends the admin server, letting a scrape in progress finish for a
// moment, and waits for it.
func (a *adminServer) stop() {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		a.http.Close()
	}
	<-a.done
}
