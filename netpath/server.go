package netpath

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"

	"github.com/echod/echod/internal/tcpinfo"
)

// Server is what echod says it sees of a connection from this client, from
// its info endpoint (InfoPath on its web echo).
type Server struct {
	URL string `json:"url"`
	// Client is the client's address as echod sees it, and Local this
	// end's own address on the same connection: they differ when a NAT or
	// a proxy stands between.
	Client string `json:"client"`
	Local  string `json:"local"`
	// Peer is the TCP peer echod sees when it is not Client: the proxy
	// that sent a PROXY header.
	Peer string `json:"peer,omitempty"`
	// TCP is the kernel's view from echod's end, when echod runs on Linux.
	TCP *tcpinfo.Info `json:"tcp,omitempty"`
	Err string        `json:"error,omitempty"`
}

// askServer asks echod's info endpoint at cfg.InfoURL how it sees this
// client.
func askServer(ctx context.Context, cfg Config) *Server {
	s := &Server{URL: cfg.InfoURL}
	tc := cfg.TLS
	if tc == nil {
		tc = &tls.Config{InsecureSkipVerify: true}
	}
	client := &http.Client{
		Timeout:   cfg.Patience,
		Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true},
	}
	defer client.CloseIdleConnections()
	trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		s.Local = ci.Conn.LocalAddr().String()
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, cfg.InfoURL, nil)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	resp, err := client.Do(req)
	if err != nil {
		s.Err = err.Error()
		if strings.Contains(s.Err, "malformed HTTP") {
			s.Err = "it does not answer in HTTP (an echo port sends the request straight back): give the address of echod's web echo (-http-listen)"
		}
		return s
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		s.Err = fmt.Sprintf("read the answer: %v", err)
		return s
	}
	if resp.StatusCode != http.StatusOK {
		s.Err = fmt.Sprintf("%s: not echod's info endpoint (it needs echod with -http-listen)", resp.Status)
		return s
	}
	var ci struct {
		Client string        `json:"client"`
		Peer   string        `json:"peer"`
		TCP    *tcpinfo.Info `json:"tcp"`
	}
	if err := json.Unmarshal(body, &ci); err != nil || ci.Client == "" {
		s.Err = "the answer is not echod's connection info: is it echod's web echo?"
		return s
	}
	s.Client, s.Peer, s.TCP = ci.Client, ci.Peer, ci.TCP
	return s
}
