package daemon

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/echod/echod/bandwidth"
)

// startBandwidth makes the one Limiter that every transport shares, so
// that an address's TCP, TLS, UDP, WebSocket and HTTP echo draw on one
// budget, and gives it to the echo server.
func (d *daemon) startBandwidth() error {
	cfg := d.cfg.Bandwidth
	cfg.Logger = d.log
	lim, err := bandwidth.New(time.Now(), cfg)
	if err != nil {
		return &ConfigError{Msg: err.Error()}
	}
	if lim == nil {
		return nil
	}
	d.bandwidth = lim
	if d.cfg.Server.Bandwidth == nil {
		d.cfg.Server.Bandwidth = lim
	}
	c := lim.Config()
	d.log.Info("bandwidth budgets", "rate_per_conn", c.PerConn.String(), "rate_per_ip", c.PerAddr.String(),
		"egress_budget", c.Egress.String())
	return nil
}

// budgetHandler refuses every request while the egress budget is spent,
// with the reason and when it renews: a new request, or a WebSocket, is a
// new session.
type budgetHandler struct {
	http.Handler
	lim *bandwidth.Limiter
}

func (h budgetHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := h.lim.Admit(time.Now())
	var spent *bandwidth.BudgetSpentError
	if errors.As(err, &spent) {
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(spent.Renews).Seconds()+1)))
		http.Error(w, "echod: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	h.Handler.ServeHTTP(w, r)
}
