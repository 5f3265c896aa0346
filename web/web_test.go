package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// serve starts h on a loopback listener and returns its base URL; the
// cleanup closes the WebSockets and then the server.
func serve(t testing.TB, h *Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return srv
}

// wsURL is srv's URL with the ws scheme and path.
func wsURL(srv *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + path
}

// dial opens a WebSocket to url, closed at the end of the test. Its client
// has a transport of its own, so that no idle connection outlives the
// test.
func dial(t testing.TB, url string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := &http.Transport{}
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	if resp.Body != nil {
		resp.Body.Close()
	}
	c.SetReadLimit(-1)
	t.Cleanup(func() {
		c.CloseNow()
		tr.CloseIdleConnections()
	})
	return c
}

// do sends req on a client of its own, without keep-alive, and returns the
// status, the headers and the body.
func do(t testing.TB, req *http.Request) (int, http.Header, string) {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer to %s %s: %v", req.Method, req.URL, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func newRequest(t testing.TB, method, url, body string, hdr ...string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return req
}

func TestRoutes(t *testing.T) {
	srv := serve(t, &Handler{})
	for _, tc := range []struct {
		name, method, path, accept string
		wantType                   string
	}{
		{"browser at /", "GET", "/", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html; charset=utf-8"},
		{"HEAD from a browser", "HEAD", "/", "text/html", "text/html; charset=utf-8"},
		{"curl at /", "GET", "/", "*/*", "application/json"},
		{"no Accept", "GET", "/", "", "application/json"},
		{"browser elsewhere", "GET", "/x", "text/html", "application/json"},
		{"html refused", "GET", "/", "text/html;q=0, application/json", "application/json"},
		{"POST from a browser", "POST", "/", "text/html", "application/json"},
		{"text", "GET", "/x", "text/plain", "text/plain; charset=utf-8"},
		{"text and json", "GET", "/x", "text/plain, application/json", "application/json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, tc.method, srv.URL+tc.path, "")
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			status, hdr, body := do(t, req)
			if status != 200 || hdr.Get("Content-Type") != tc.wantType {
				t.Fatalf("got %d %q, want 200 %q", status, hdr.Get("Content-Type"), tc.wantType)
			}
			if hdr.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q, want nosniff", hdr.Get("X-Content-Type-Options"))
			}
			if tc.method == "HEAD" && body != "" {
				t.Errorf("HEAD got a body of %d bytes", len(body))
			}
			if tc.method == "GET" && strings.HasPrefix(tc.wantType, "text/html") && !strings.Contains(body, "<title>echod: web echo</title>") {
				t.Errorf("the page lacks its title: %.200s", body)
			}
		})
	}
}

func TestPageIsSelfContained(t *testing.T) {
	for _, ref := range []string{"src=", "href=", "@import", "url("} {
		if strings.Contains(page, ref) {
			t.Errorf("page.html contains %q: it must load nothing from elsewhere", ref)
		}
	}
}
