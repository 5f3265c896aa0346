package web

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

func TestInfo(t *testing.T) {
	for _, tc := range []struct {
		name    string
		connCtx bool
	}{
		{"with the connection", true},
		{"without it", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{}
			srv := httptest.NewUnstartedServer(h)
			if tc.connCtx {
				srv.Config.ConnContext = ConnContext
			}
			srv.Start()
			t.Cleanup(func() {
				h.Close()
				srv.Close()
			})
			var local string
			tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var d net.Dialer
				c, err := d.DialContext(ctx, network, addr)
				if err == nil {
					local = c.LocalAddr().String()
				}
				return c, err
			}}
			t.Cleanup(tr.CloseIdleConnections)
			resp, err := (&http.Client{Transport: tr}).Get(srv.URL + InfoPath)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var ci ConnInfo
			if err := json.NewDecoder(resp.Body).Decode(&ci); err != nil {
				t.Fatalf("%s: %v", resp.Status, err)
			}
			if ci.Client != local || ci.Server != srv.Listener.Addr().String() || ci.Peer != "" || ci.TLS != nil {
				t.Errorf("info %+v, want client %s, server %s, no peer, no TLS", ci, local, srv.Listener.Addr())
			}
			wantTCP := tc.connCtx && runtime.GOOS == "linux"
			if (ci.TCP != nil) != wantTCP || (wantTCP && ci.TCP.SendMSS <= 0) {
				t.Errorf("info's TCP view %+v, want one: %v", ci.TCP, wantTCP)
			}
		})
	}
}

func TestInfoPathIsOnlyForGet(t *testing.T) {
	srv := serve(t, &Handler{})
	resp, err := http.Post(srv.URL+InfoPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var req Request
	if err := json.NewDecoder(resp.Body).Decode(&req); err != nil || req.Method != "POST" || req.Path != InfoPath {
		t.Errorf("POST %s got %+v (%v), want the request echo", InfoPath, req, err)
	}
}
