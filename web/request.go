package web

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
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
	// (BodyEncoding "base64"). BodyBytes is its length before encoding.
	// BodyTruncated says that more was sent than the echo holds, and
	// BodyCut why: CutMaxBody or CutMemory. The rest is read and
	// discarded, so that the echo is not lost to a reset.
	Body          string `json:"body"`
	BodyEncoding  string `json:"body_encoding"`
	BodyBytes     int    `json:"body_bytes"`
	BodyTruncated bool   `json:"body_truncated"`
	BodyCut       string `json:"body_cut,omitempty"`
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

// Why a request echo's body was cut (Request.BodyCut).
const (
	// CutMaxBody: the body was longer than MaxBody.
	CutMaxBody = "max-body"
	// CutMemory: the request echoes' memory budget had no room for more
	// of the body (BodyMemory, or the share of one address or
	// connection).
	CutMemory = "memory"
)

// Memory a request echo is charged beyond its body: what net/http holds
// for it and the echo's own state, beside its headers.
const requestOverhead = 4 << 10

// serveRequest answers with the request echo, after ?delay= and with
// ?status=.
func (h *Handler) serveRequest(w http.ResponseWriter, r *http.Request) {
	acct, ok := h.budget().open(r.RemoteAddr)
	if !ok {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("too many requests in flight from your address: at most %d at once", h.maxRequests()), http.StatusTooManyRequests)
		return
	}
	defer acct.close()
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
	// The headers are echoed, and held until the echo is written, which
	// may be never for an HTTP/2 stream whose window stays shut: charged
	// before anything is built, they bound how many such streams a
	// connection or address holds.
	if err := acct.take(r.Context(), headerSize(r)+requestOverhead, false); err != nil {
		return // the client gave up waiting
	}
	h.stats.requests.Add(1)
	echo, body, err := h.describe(w, r, acct)
	if errors.Is(err, errStalled) {
		w.Header().Set("Connection", "close")
		http.Error(w, err.Error(), http.StatusRequestTimeout)
		return
	}
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
		// An informational status goes ahead of the echo's own 200, to
		// clients that know them: HTTP/1.0 has none (RFC 9110, 15.2).
		if r.ProtoAtLeast(1, 1) {
			w.WriteHeader(status)
		}
		status = http.StatusOK
	}
	write := writeJSON
	if accepts(r, "text/plain") && !accepts(r, "application/json") {
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		write = writeText
	} else {
		hdr.Set("Content-Type", "application/json")
	}
	if !bodyAllowed(status) {
		w.WriteHeader(status)
		return
	}
	var size counter
	write(&size, echo, body, 0)
	hdr.Set("Content-Length", strconv.FormatInt(size.n, 10))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		write(toJSONWriter(w), echo, body, size.n) // an error is the client's: nothing to tell it
	}
}

// toJSONWriter returns w as a jsonWriter: net/http's ResponseWriters have
// WriteString, a wrapper around one may not.
func toJSONWriter(w io.Writer) jsonWriter {
	if jw, ok := w.(jsonWriter); ok {
		return jw
	}
	return stringWriter{w}
}

type stringWriter struct{ io.Writer }

func (w stringWriter) WriteString(s string) (int, error) { return w.Write([]byte(s)) }

// headerSize is about what r's request line and headers take in memory.
func headerSize(r *http.Request) int64 {
	n := len(r.RequestURI) + len(r.Host) + len(r.Method)
	for k, vs := range r.Header {
		n += len(k)
		for _, v := range vs {
			n += len(v) + 16 // and the string header
		}
	}
	return int64(n)
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

// describe builds the echo of r, reading up to MaxBody of its body into
// memory charged to acct; it returns the echo and the body, whose
// encoding the echo names and whose bytes are not in echo.Body. The rest
// of a body it cut is read and discarded, so that net/http keeps the
// connection, or at least does not close it with a reset that loses the
// echo.
func (h *Handler) describe(w http.ResponseWriter, r *http.Request, acct *account) (*Request, []byte, error) {
	body, cut, err := h.readBody(w, r, acct)
	if err != nil {
		return nil, nil, fmt.Errorf("read body: %w", err)
	}
	if cut != "" {
		io.Copy(io.Discard, r.Body) // bounded by the server's ReadTimeout
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
		BodyBytes:     len(body),
		BodyTruncated: cut != "",
		BodyCut:       cut,
	}
	if !utf8.Valid(body) {
		e.BodyEncoding = "base64"
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
	return e, body, nil
}

// firstPiece is the memory a body is first given; it doubles from there
// as the body arrives.
const firstPiece = 4 << 10

// readBody reads up to MaxBody of r's body, charging acct for the memory
// as it arrives, never ahead: a client that declares a megabyte and sends
// two bytes holds a few kilobytes. When the next piece does not fit the
// budget, the body is cut there (CutMemory) rather than waiting for
// memory that other bodies hold; those that have stalled are
// interrupted, through w, to give theirs back (errStalled).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, acct *account) (body []byte, cut string, err error) {
	if r.ContentLength == 0 {
		return nil, "", nil
	}
	most := h.maxBody()
	// One byte past MaxBody tells that there was more.
	room := most + 1
	if r.ContentLength >= 0 {
		room = min(room, r.ContentLength+1)
	}
	rc := http.NewResponseController(w)
	acct.startUpload(func() { rc.SetReadDeadline(time.Now()) })
	defer acct.endUpload()
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			grow := min(max(2*int64(cap(buf)), firstPiece), room)
			if grow <= int64(cap(buf)) {
				break // Content-Length was a lie: cut below
			}
			if acct.take(r.Context(), grow, true) != nil {
				return buf, CutMemory, nil
			}
			next := make([]byte, len(buf), grow)
			copy(next, buf)
			acct.give(int64(cap(buf)))
			buf = next
		}
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			acct.heard.Store(time.Now().UnixNano())
		}
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > most {
			return buf[:most], CutMaxBody, nil
		}
		if err == io.EOF {
			return buf, "", nil
		}
		if err != nil && acct.interrupted.Load() {
			acct.give(int64(cap(buf)))
			return nil, "", errStalled
		}
		if err != nil {
			return nil, "", err
		}
	}
	return buf, CutMaxBody, nil
}

// Text is the echo in a form for people: the request as received, then
// what echod saw of its connection.
func (e *Request) Text() string {
	var b strings.Builder
	textTo(&b, e, func(w jsonWriter) error {
		_, err := w.WriteString(e.Body)
		return err
	}, strings.HasSuffix(e.Body, "\n"))
	return b.String()
}

// writeText writes the echo e as Text does, body in place of e.Body; its
// size is writeJSON's, and unused.
func writeText(w jsonWriter, e *Request, body []byte, _ int64) error {
	return textTo(w, e, func(w jsonWriter) error {
		if e.BodyEncoding != "base64" {
			_, err := w.Write(body)
			return err
		}
		b64 := base64.NewEncoder(base64.StdEncoding, w)
		if _, err := b64.Write(body); err != nil {
			return err
		}
		return b64.Close()
	}, e.BodyEncoding != "base64" && len(body) > 0 && body[len(body)-1] == '\n')
}

// textTo writes the echo e in text, its body by writeBody; endsInNewline
// says whether the body as written ends a line.
func textTo(w jsonWriter, e *Request, writeBody func(jsonWriter) error, endsInNewline bool) error {
	var err error
	printf := func(format string, args ...any) {
		if err == nil {
			_, err = fmt.Fprintf(w, format, args...)
		}
	}
	printf("%s %s %s\n", e.Method, e.URI, e.Protocol)
	printf("Host: %s\n", e.Host)
	for _, name := range slices.Sorted(maps.Keys(e.Headers)) {
		for _, v := range e.Headers[name] {
			printf("%s: %s\n", name, v)
		}
	}
	printf("\n")
	if e.BodyBytes > 0 {
		if e.BodyEncoding == "base64" {
			printf("(%d bytes of binary body, in base64)\n", e.BodyBytes)
		}
		if err == nil {
			err = writeBody(w)
		}
		if !endsInNewline {
			printf("\n")
		}
		switch e.BodyCut {
		case CutMaxBody:
			printf("(body cut here at the most echoed; the rest was read and discarded)\n")
		case CutMemory:
			printf("(body cut here: no memory to hold more; the rest was read and discarded)\n")
		default:
			if e.BodyTruncated {
				printf("(body cut here: the rest was not read)\n")
			}
		}
		printf("\n")
	}
	printf("client:   %s\n", e.Client)
	if e.TLS != nil {
		printf("tls:      %s, %s", e.TLS.Version, e.TLS.Cipher)
		if e.TLS.ALPN != "" {
			printf(", ALPN %s", e.TLS.ALPN)
		}
		if e.TLS.SNI != "" {
			printf(", SNI %s", e.TLS.SNI)
		}
		if e.TLS.ClientCertSubject != "" {
			printf(", client certificate %s", e.TLS.ClientCertSubject)
		}
		printf("\n")
	} else {
		printf("tls:      none\n")
	}
	printf("hostname: %s\n", e.Hostname)
	return err
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
