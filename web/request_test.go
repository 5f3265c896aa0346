package web

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

func decode(t testing.TB, body string) Request {
	t.Helper()
	var e Request
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not a JSON echo: %v\n%s", err, body)
	}
	return e
}

func TestRequestEchoDescribesTheRequest(t *testing.T) {
	srv := serve(t, &Handler{Hostname: "echo-1"})
	// The client's own address, to compare with what echod reports.
	var local string
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			local = c.LocalAddr().String()
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	req := newRequest(t, "POST", srv.URL+"/x/y%20z?y=1&y=2&q=a+b", "hello",
		"X-Forwarded-For", "203.0.113.9", "Forwarded", "for=198.51.100.7", "X-Custom", "one", "X-Custom", "two")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e Request
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	want := Request{
		Method: "POST", Path: "/x/y z", URI: "/x/y%20z?y=1&y=2&q=a+b",
		Query:    map[string][]string{"y": {"1", "2"}, "q": {"a b"}},
		Protocol: "HTTP/1.1", Host: strings.TrimPrefix(srv.URL, "http://"),
		Body: "hello", BodyEncoding: "text", BodyBytes: 5,
		Client:        local,
		XForwardedFor: []string{"203.0.113.9"}, Forwarded: []string{"for=198.51.100.7"},
		Hostname: "echo-1",
	}
	got := e
	got.Headers = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("echo:\n got %+v\nwant %+v", got, want)
	}
	if h := e.Headers["X-Custom"]; !reflect.DeepEqual(h, []string{"one", "two"}) {
		t.Errorf("X-Custom = %q, want both values in order", h)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v: want Access-Control-Allow-Origin * and Cache-Control no-store", resp.Header)
	}
}

func TestRequestEchoBody(t *testing.T) {
	srv := serve(t, &Handler{MaxBody: 10})
	for _, tc := range []struct {
		name, body, wantBody, wantEncoding string
		wantBytes                          int
		wantCut                            bool
	}{
		{"none", "", "", "text", 0, false},
		{"text", "héllo", "héllo", "text", 6, false},
		{"binary", "\xff\x00\x01", base64.StdEncoding.EncodeToString([]byte("\xff\x00\x01")), "base64", 3, false},
		{"at the limit", "0123456789", "0123456789", "text", 10, false},
		{"past the limit", "0123456789abcdef", "0123456789", "text", 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, body := do(t, newRequest(t, "PUT", srv.URL+"/", tc.body))
			e := decode(t, body)
			if e.Body != tc.wantBody || e.BodyEncoding != tc.wantEncoding || e.BodyBytes != tc.wantBytes || e.BodyTruncated != tc.wantCut {
				t.Errorf("got body %q %s %d cut=%v, want %q %s %d cut=%v", e.Body, e.BodyEncoding, e.BodyBytes, e.BodyTruncated,
					tc.wantBody, tc.wantEncoding, tc.wantBytes, tc.wantCut)
			}
		})
	}
}

func TestRequestEchoStatus(t *testing.T) {
	srv := serve(t, &Handler{})
	for _, tc := range []struct {
		query      string
		wantStatus int
		wantReason string // in the body of a 400
	}{
		{"", 200, ""},
		{"status=503", 503, ""},
		{"status=418", 418, ""},
		{"status=599", 599, ""},
		{"status=204", 204, ""},
		{"status=301", 301, ""},
		{"status=103", 200, ""}, // informational, ahead of the echo's 200
		{"status=99", 400, `invalid status "99": want a number from 100 to 599`},
		{"status=600", 400, `invalid status "600"`},
		{"status=abc", 400, `invalid status "abc"`},
		{"status=%2B200", 400, `invalid status "+200"`},
		{"status=", 400, `invalid status ""`},
		{"status=101", 400, "only a protocol upgrade"},
		{"status=200&status=500", 400, "status given 2 times"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			status, _, body := do(t, newRequest(t, "GET", srv.URL+"/?"+tc.query, ""))
			if status != tc.wantStatus {
				t.Fatalf("got %d, want %d: %s", status, tc.wantStatus, body)
			}
			switch {
			case tc.wantReason != "" && !strings.Contains(body, tc.wantReason):
				t.Errorf("body %q does not say %q", body, tc.wantReason)
			case tc.wantStatus == 204 && body != "":
				t.Errorf("204 with a body: %q", body)
			case tc.wantReason == "" && tc.wantStatus != 204:
				decode(t, body)
			}
		})
	}
}

func TestRequestEchoDelay(t *testing.T) {
	srv := serve(t, &Handler{MaxDelay: 2 * time.Second})
	for _, tc := range []struct {
		query       string
		wantStatus  int
		wantAtLeast time.Duration
		wantReason  string
	}{
		{"delay=300ms", 200, 300 * time.Millisecond, ""},
		{"delay=0.2", 200, 200 * time.Millisecond, ""},
		{"delay=0", 200, 0, ""},
		{"delay=3s", 400, 0, "delay 3s is longer than the most allowed, 2s"},
		{"delay=1e300", 400, 0, "longer than the most allowed"},
		{"delay=-1s", 400, 0, "must not be negative"},
		{"delay=NaN", 400, 0, `invalid delay "NaN"`},
		{"delay=soon", 400, 0, `invalid delay "soon": want a duration such as 250ms or 2s`},
	} {
		t.Run(tc.query, func(t *testing.T) {
			start := time.Now()
			status, _, body := do(t, newRequest(t, "GET", srv.URL+"/?"+tc.query, ""))
			if took := time.Since(start); status != tc.wantStatus || took < tc.wantAtLeast {
				t.Fatalf("got %d after %v, want %d after at least %v: %s", status, took, tc.wantStatus, tc.wantAtLeast, body)
			}
			if !strings.Contains(body, tc.wantReason) {
				t.Errorf("body %q does not say %q", body, tc.wantReason)
			}
		})
	}
}

func TestRequestEchoDelayEndsWithTheClientAndTheDrain(t *testing.T) {
	h := &Handler{MaxDelay: time.Minute}
	arrived := make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})

	// A client that gives up: the handler returns at once (goleak and
	// the server's Close would catch one still waiting).
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req := newRequest(t, "GET", srv.URL+"/?delay=50s", "").WithContext(ctx)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		t.Fatal("a 50 s delay answered within 100 ms")
	}

	// The drain: a waiting request is answered 503 at once.
	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		status, _, body := do(t, newRequest(t, "GET", srv.URL+"/?delay=50s", ""))
		got <- answer{status, body}
	}()
	// Wait until the request is in the handler, then drain.
	<-arrived // the first request's
	<-arrived
	if err := h.Shutdown(ctxFor(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-got:
		if a.status != http.StatusServiceUnavailable || !strings.Contains(a.body, "shutting down") {
			t.Fatalf("got %d %q, want 503 server shutting down", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the delayed request was not answered within 10 s of the drain")
	}
}

func TestRequestEchoAsText(t *testing.T) {
	srv := serve(t, &Handler{Hostname: "echo-1"})
	status, hdr, body := do(t, newRequest(t, "POST", srv.URL+"/x?y=1", "hello", "Accept", "text/plain", "X-Forwarded-For", "203.0.113.9"))
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("got %d %q", status, hdr.Get("Content-Type"))
	}
	for _, want := range []string{
		"POST /x?y=1 HTTP/1.1\nHost: 127.0.0.1:",
		"\nX-Forwarded-For: 203.0.113.9\n",
		"\n\nhello\n\n",
		"\nclient:   127.0.0.1:",
		"\ntls:      none\n",
		"\nhostname: echo-1\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("text echo lacks %q:\n%s", want, body)
		}
	}
}

func TestRequestEchoOverTLS(t *testing.T) {
	h := &Handler{}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	certFile, keyFile, _ := testcert.Write(t, t.TempDir(), "client", "echod test client")
	clientCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{clientCert}},
		ForceAttemptHTTP2: true,
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e Request
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	want := &TLS{Version: "TLS 1.3", Cipher: e.TLS.Cipher, ALPN: "h2", SNI: "example.com", ClientCertSubject: "CN=echod test client"}
	if e.TLS == nil || *e.TLS != *want || e.Protocol != "HTTP/2.0" || !strings.HasPrefix(e.TLS.Cipher, "TLS_") {
		t.Fatalf("got protocol %s, TLS %+v; want HTTP/2.0 and %+v", e.Protocol, e.TLS, want)
	}
}

// A page elsewhere may send any request and read the echo: the preflight
// allows what it asks; an OPTIONS that is not a preflight is echoed.
func TestRequestEchoCORSPreflight(t *testing.T) {
	srv := serve(t, &Handler{})
	status, hdr, body := do(t, newRequest(t, "OPTIONS", srv.URL+"/x", "", "Origin", "https://elsewhere.example",
		"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "x-test, content-type"))
	if status != http.StatusNoContent || body != "" || hdr.Get("Access-Control-Allow-Origin") != "*" ||
		hdr.Get("Access-Control-Allow-Methods") != "PUT" || hdr.Get("Access-Control-Allow-Headers") != "x-test, content-type" {
		t.Errorf("preflight: %d %v %q", status, hdr, body)
	}
	status, _, body = do(t, newRequest(t, "OPTIONS", srv.URL+"/x", ""))
	if e := decode(t, body); status != 200 || e.Method != "OPTIONS" {
		t.Errorf("plain OPTIONS: %d %+v", status, e)
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"200", "99", "600", "abc", "", "101", "1e2", "0200", " 200", "-200"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseStatus(url.Values{"status": {s}})
		if err != nil {
			if n != 0 || err.Error() == "" {
				t.Fatalf("%q: %d with error %v", s, n, err)
			}
			return
		}
		if n < 100 || n > 599 || n == 101 {
			t.Fatalf("%q accepted as %d", s, n)
		}
	})
}

func FuzzParseDelay(f *testing.F) {
	for _, s := range []string{"1s", "250ms", "0.5", "10", "-1", "1e308", "NaN", "Inf", "", "1h", "9223372036854775807ns"} {
		f.Add(s)
	}
	const most = 10 * time.Second
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDelay(url.Values{"delay": {s}}, most)
		if err != nil {
			if d != 0 || err.Error() == "" {
				t.Fatalf("%q: %v with error %v", s, d, err)
			}
			return
		}
		if d < 0 || d > most {
			t.Fatalf("%q accepted as %v, outside 0 to %v", s, d, most)
		}
	})
}

// stalledUploads opens n connections to srv that each send a request
// whose body stalls: half declare a megabyte and send two bytes, half are
// chunked and send no chunk. It returns the connections, each ready to
// finish its body with finish.
func stalledUploads(t *testing.T, srv *httptest.Server, n int) []net.Conn {
	t.Helper()
	addr := strings.TrimPrefix(srv.URL, "http://")
	conns := make([]net.Conn, n)
	for i := range conns {
		c := testkit.Dial(t, addr)
		head := "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nab"
		if i%2 == 1 {
			head = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
		}
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns
}

// inFlight is how many requests h is serving.
func inFlight(h *Handler) int {
	b := h.budget()
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, s := range b.addrs {
		n += s.requests
	}
	return n
}

// A request without a body is answered while uploads that stall are held:
// they hold the memory of what they sent, not of what they declared, and
// are still served whole when they go on.
func TestBodilessRequestIsNotHeldUpByStalledUploads(t *testing.T) {
	const uploads = 64
	h := &Handler{}
	srv := serve(t, h)
	conns := stalledUploads(t, srv, uploads)
	testkit.WaitFor(t, "every upload to be in flight", func() bool { return inFlight(h) == uploads })

	// The old budget reserved 8 MiB for each declared megabyte: 32 such
	// uploads held all of it, and this waited for their timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req := newRequest(t, "GET", srv.URL+"/bodiless", "")
	code, _, body := do(t, req.WithContext(ctx))
	if code != http.StatusOK || decode(t, body).Path != "/bodiless" {
		t.Fatalf("GET beside %d stalled uploads: %d %s", uploads, code, body)
	}
	if n := inFlight(h); n != uploads+0 {
		t.Fatalf("%d requests in flight after the GET, want the %d uploads still held", n, uploads)
	}
	if used, _ := h.budget().usage(); used > uploads*(firstPiece+2*requestOverhead) {
		t.Errorf("stalled uploads hold %d bytes of the budget, more than what they sent and their headers", used)
	}

	// A stalled upload, finished, is echoed whole.
	c := conns[1] // chunked
	io.WriteString(c, "5\r\nhello\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e Request
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Body != "hello" || e.BodyTruncated {
		t.Fatalf("finished upload: %+v, %v", e, err)
	}
}

// When the budget has no room for more of a body, the body is cut where it
// stopped fitting, and the echo, whole, says so; it does not wait for
// memory that a stalled upload holds.
func TestBodyCutWhenTheBudgetIsFull(t *testing.T) {
	h := &Handler{MaxBody: 1 << 20, BodyMemory: 1}
	b := h.budget()
	b.mu.Lock()
	b.stallGrace = time.Hour // the stalled upload keeps its memory
	b.mu.Unlock()
	srv := serve(t, h)
	c := testkit.Dial(t, strings.TrimPrefix(srv.URL, "http://"))
	// 600 KB of a megabyte, then a stall: the body's buffer has grown to
	// its whole megabyte, nearly all the budget.
	io.WriteString(c, "POST /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
	c.Write(bytes.Repeat([]byte("s"), 600_000))
	testkit.WaitFor(t, "the stalled upload to hold its megabyte", func() bool {
		used, _ := b.usage()
		return used > 1<<20
	})

	body := bytes.Repeat([]byte("z"), 1<<20)
	code, _, out := do(t, newRequestBody(t, srv.URL+"/cut", bytes.NewReader(body)))
	e := decode(t, out)
	if code != http.StatusOK || !e.BodyTruncated || e.BodyCut != CutMemory || e.BodyBytes >= len(body) || e.Body != string(body[:e.BodyBytes]) {
		t.Fatalf("upload beside a full budget: %d, %d bytes, truncated %v, cut %q", code, e.BodyBytes, e.BodyTruncated, e.BodyCut)
	}
	_, _, text := do(t, newRequest(t, "POST", srv.URL+"/cut", string(body), "Accept", "text/plain"))
	if !strings.Contains(text, "(body cut here: no memory to hold more") {
		t.Errorf("text echo of a cut body does not say why:\n%.200s", text[len(text)-300:])
	}

	// The stalled upload goes on and gets its whole echo.
	c.Write(bytes.Repeat([]byte("s"), 1<<20-600_000))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var first Request
	if err := json.NewDecoder(resp.Body).Decode(&first); err != nil || first.BodyBytes != 1<<20 || first.BodyTruncated {
		t.Fatalf("stalled upload, finished: %d bytes, truncated %v, %v", first.BodyBytes, first.BodyTruncated, err)
	}
	testkit.WaitFor(t, "the budget to be given back", func() bool { used, _ := b.usage(); return used == 0 })
}

// An upload that stalls gives its memory back when a body needs it: it is
// answered 408 at once, without what it sent, and the body that needed
// the memory is echoed whole.
func TestStalledUploadGivesItsMemoryBack(t *testing.T) {
	h := &Handler{MaxBody: 1 << 20, BodyMemory: 1}
	b := h.budget()
	b.mu.Lock()
	b.stallGrace = 0 // quiet at all is stalled
	b.mu.Unlock()
	srv := serve(t, h)
	c := testkit.Dial(t, strings.TrimPrefix(srv.URL, "http://"))
	io.WriteString(c, "POST /stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
	c.Write(bytes.Repeat([]byte("s"), 600_000))
	testkit.WaitFor(t, "the stalled upload to hold its megabyte", func() bool {
		used, _ := b.usage()
		return used > 1<<20
	})

	body := bytes.Repeat([]byte("z"), 1<<20)
	if _, _, out := do(t, newRequestBody(t, srv.URL+"/whole", bytes.NewReader(body))); decode(t, out).BodyBytes != len(body) {
		t.Fatalf("the upload beside a stalled one was not echoed whole: %.300s", out)
	}
	// The stalled upload was answered 408, and its connection closed.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
		t.Fatalf("stalled upload: %s, close %v; want 408 and the connection closed", resp.Status, resp.Close)
	}
	testkit.WaitFor(t, "the budget to be given back", func() bool { used, _ := b.usage(); return used == 0 })
}

// Requests in flight from one address are bounded: the one past
// MaxRequestsPerAddr is answered 429 at once.
func TestRequestsPerAddressAreBounded(t *testing.T) {
	h := &Handler{MaxRequestsPerAddr: 2}
	srv := serve(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{}, 2)
	for range 2 {
		go func() {
			defer func() { done <- struct{}{} }()
			req := newRequest(t, "GET", srv.URL+"/?delay=10s", "")
			resp, err := http.DefaultClient.Do(req.WithContext(ctx))
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	testkit.WaitFor(t, "two requests in flight", func() bool { return inFlight(h) == 2 })
	code, hdr, body := do(t, newRequest(t, "GET", srv.URL+"/third", ""))
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" || !strings.Contains(body, "at most 2 at once") {
		t.Fatalf("third request: %d %v %q; want 429 with Retry-After", code, hdr, body)
	}
	cancel()
	<-done
	<-done
	testkit.WaitFor(t, "the delayed requests to end", func() bool { return inFlight(h) == 0 })
	if code, _, _ := do(t, newRequest(t, "GET", srv.URL+"/again", "")); code != http.StatusOK {
		t.Fatalf("after the others ended: %d, want 200", code)
	}
}

// A ResponseWriter without WriteString, as a middleware's may be, gets the
// same echo.
func TestRequestEchoThroughAPlainResponseWriter(t *testing.T) {
	h := &Handler{Hostname: "x"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(struct{ http.ResponseWriter }{w}, r)
	}))
	t.Cleanup(srv.Close)
	code, _, body := do(t, newRequest(t, "POST", srv.URL+"/plain", "héllo\x01"))
	if e := decode(t, body); code != http.StatusOK || e.Body != "héllo\x01" || e.Path != "/plain" {
		t.Fatalf("%d %+v", code, e)
	}
}

// An informational ?status= goes ahead of the echo only to clients that
// know informational responses: not to HTTP/1.0 (RFC 9110, 15.2).
func TestInformationalStatusNotSentToHTTP10(t *testing.T) {
	srv := serve(t, &Handler{})
	for _, tc := range []struct{ proto, want string }{
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\n"},
		{"HTTP/1.1", "HTTP/1.1 103 Early Hints\r\n"},
	} {
		c := testkit.Dial(t, strings.TrimPrefix(srv.URL, "http://"))
		io.WriteString(c, "GET /?status=103 "+tc.proto+"\r\nHost: x\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != tc.want {
			t.Errorf("%s: first line %q, %v; want %q", tc.proto, line, err, tc.want)
		}
	}
}

func newRequestBody(t testing.TB, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
