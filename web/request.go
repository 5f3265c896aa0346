package web

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Request is the HTTP request echo: what echod received, as JSON.
type Request struct {
	Method   string              `json:"method"`
	Path     string              `json:"path"` // decoded
	URI      string              `json:"uri"`  // the request target as sent
	Query    map[string][]string `json:"query"`
	Protocol string              `json:"protocol"` // HTTP/1.1, HTTP/2.0
	Host     string              `json:"host"`
	Headers  map[string][]string `json:"headers"` // canonical names; Host is in host
	// Body is the request body, up to the Handler's MaxBody: as text when
	// it is valid UTF-8 (BodyEncoding "text"), else in standard base64
	// (BodyEncoding "base64"). BodyBytes is its length before encoding,
	// and BodyTruncated says that more was sent and not read.
	Body          string `json:"body"`
	BodyEncoding  string `json:"body_encoding"`
	BodyBytes     int    `json:"body_bytes"`
	BodyTruncated bool   `json:"body_truncated"`
	// Client is the client's address as echod sees it: the TCP peer, or
	// under the PROXY protocol the source the proxy gave.
	Client string `json:"client"`
	// XForwardedFor and Forwarded are those headers as sent; echod never
	// trusts them, for limits or anything else.
	XForwardedFor []string `json:"x_forwarded_for,omitempty"`
	Forwarded     []string `json:"forwarded,omitempty"`
	// TLS is nil for a request that did not come over TLS.
	TLS *TLS `json:"tls"`
	// Hostname is the server's name.
	Hostname string `json:"hostname"`
}

// TLS is what the TLS handshake of a request's connection settled.
type TLS struct {
	Version string `json:"version"` // such as "TLS 1.3"
	Cipher  string `json:"cipher"`
	ALPN    string `json:"alpn,omitempty"`
	SNI     string `json:"sni,omitempty"`
	// ClientCertSubject is the subject of the certificate the client
	// offered, if any; echod reports it and does not verify it.
	ClientCertSubject string `json:"client_cert_subject,omitempty"`
}

// serveRequest answers with the request echo, after ?delay= and with
// ?status=.
func (h *Handler) serveRequest(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status, err := parseStatus(q)
	if err == nil {
		var delay time.Duration
		if delay, err = parseDelay(q, h.maxDelay()); err == nil && delay > 0 {
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return // the client gave up; nobody reads an answer
			case <-h.shuttingDown():
				http.Error(w, "server shutting down", http.StatusServiceUnavailable)
				return
			}
		}
	}
	if err != nil {
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The memory this echo may take, known up front from Content-Length
	// when there is one.
	cost := h.maxBody() + 1
	if r.ContentLength >= 0 {
		cost = min(cost, r.ContentLength+1)
	}
	cost *= bodyCost
	if err := h.bodyMemory().Acquire(r.Context(), cost); err != nil {
		return // the client gave up waiting
	}
	defer h.bodyMemory().Release(cost)
	h.stats.requests.Add(1)
	echo, err := h.describe(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	// Pages elsewhere may read the echo: it carries nothing but what the
	// reader itself sent.
	hdr.Set("Access-Control-Allow-Origin", "*")
	if status < 200 {
		// An informational status goes ahead of the echo's own 200.
		w.WriteHeader(status)
		status = http.StatusOK
	}
	var body []byte
	if accepts(r, "text/plain") && !accepts(r, "application/json") {
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		body = []byte(echo.Text())
	} else {
		hdr.Set("Content-Type", "application/json")
		body, _ = json.MarshalIndent(echo, "", "  ") // cannot fail: strings, maps and slices
		body = append(body, '\n')
	}
	if !bodyAllowed(status) {
		w.WriteHeader(status)
		return
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// servePreflight allows a page on any origin the request it asks about
// (CORS), so that a script elsewhere can send any request and read its
// echo, which holds nothing but what the script sent.
func servePreflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("Access-Control-Allow-Methods", r.Header.Get("Access-Control-Request-Method"))
	if h := r.Header.Values("Access-Control-Request-Headers"); len(h) > 0 {
		hdr.Set("Access-Control-Allow-Headers", strings.Join(h, ", "))
	}
	hdr.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// describe builds the echo of r, reading up to MaxBody of its body.
func (h *Handler) describe(r *http.Request) (*Request, error) {
	max := h.maxBody()
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	e := &Request{
		Method:        r.Method,
		Path:          r.URL.Path,
		URI:           r.RequestURI,
		Query:         r.URL.Query(),
		Protocol:      r.Proto,
		Host:          r.Host,
		Headers:       r.Header,
		Client:        r.RemoteAddr,
		XForwardedFor: r.Header.Values("X-Forwarded-For"),
		Forwarded:     r.Header.Values("Forwarded"),
		Hostname:      h.serverName(),
		BodyEncoding:  "text",
	}
	if int64(len(body)) > max {
		body, e.BodyTruncated = body[:max], true
	}
	e.BodyBytes = len(body)
	if utf8.Valid(body) {
		e.Body = string(body)
	} else {
		e.Body, e.BodyEncoding = base64.StdEncoding.EncodeToString(body), "base64"
	}
	if r.TLS != nil {
		e.TLS = &TLS{
			Version: tls.VersionName(r.TLS.Version),
			Cipher:  tls.CipherSuiteName(r.TLS.CipherSuite),
			ALPN:    r.TLS.NegotiatedProtocol,
			SNI:     r.TLS.ServerName,
		}
		if len(r.TLS.PeerCertificates) > 0 {
			e.TLS.ClientCertSubject = r.TLS.PeerCertificates[0].Subject.String()
		}
	}
	return e, nil
}

// Text is the echo in a form for people: the request as received, then
// what echod saw of its connection.
func (e *Request) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\n", e.Method, e.URI, e.Protocol)
	fmt.Fprintf(&b, "Host: %s\n", e.Host)
	for _, name := range slices.Sorted(maps.Keys(e.Headers)) {
		for _, v := range e.Headers[name] {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	b.WriteString("\n")
	if e.BodyBytes > 0 {
		if e.BodyEncoding == "base64" {
			fmt.Fprintf(&b, "(%d bytes of binary body, in base64)\n", e.BodyBytes)
		}
		b.WriteString(e.Body)
		if !strings.HasSuffix(e.Body, "\n") {
			b.WriteString("\n")
		}
		if e.BodyTruncated {
			b.WriteString("(body cut here: the rest was not read)\n")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "client:   %s\n", e.Client)
	if e.TLS != nil {
		fmt.Fprintf(&b, "tls:      %s, %s", e.TLS.Version, e.TLS.Cipher)
		if e.TLS.ALPN != "" {
			fmt.Fprintf(&b, ", ALPN %s", e.TLS.ALPN)
		}
		if e.TLS.SNI != "" {
			fmt.Fprintf(&b, ", SNI %s", e.TLS.SNI)
		}
		if e.TLS.ClientCertSubject != "" {
			fmt.Fprintf(&b, ", client certificate %s", e.TLS.ClientCertSubject)
		}
		b.WriteString("\n")
	} else {
		b.WriteString("tls:      none\n")
	}
	fmt.Fprintf(&b, "hostname: %s\n", e.Hostname)
	return b.String()
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// parseStatus reads ?status=NNN: 200 when absent, else a status from 100 to
// 599 (not 101, which only an upgrade may answer).
func parseStatus(q map[string][]string) (int, error) {
	v, ok := q["status"]
	if !ok {
		return http.StatusOK, nil
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("status given %d times: give it once", len(v))
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || len(v[0]) != 3 || n < 100 || n > 599 {
		return 0, fmt.Errorf("invalid status %q: want a number from 100 to 599, such as ?status=503", v[0])
	}
	if n == http.StatusSwitchingProtocols {
		return 0, fmt.Errorf("invalid status 101: only a protocol upgrade may answer it")
	}
	return n, nil
}

// parseDelay reads ?delay=D: a Go duration (250ms, 1.5s) or a number of
// seconds, from 0 up to most.
func parseDelay(q map[string][]string, most time.Duration) (time.Duration, error) {
	v, ok := q["delay"]
	if !ok {
		return 0, nil
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("delay given %d times: give it once", len(v))
	}
	d, err := time.ParseDuration(v[0])
	if err != nil {
		secs, ferr := strconv.ParseFloat(v[0], 64)
		if ferr != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, fmt.Errorf("invalid delay %q: want a duration such as 250ms or 2s, or a number of seconds, up to %v", v[0], most)
		}
		// Compared in seconds: a huge number overflows a Duration.
		if secs > most.Seconds() {
			return 0, fmt.Errorf("delay %s is longer than the most allowed, %v", v[0], most)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	switch {
	case d < 0:
		return 0, fmt.Errorf("invalid delay %q: must not be negative", v[0])
	case d > most:
		return 0, fmt.Errorf("delay %s is longer than the most allowed, %v", v[0], most)
	}
	return d, nil
}
