package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/echod/echod/internal/testcert"
	"github.com/echod/echod/internal/testkit"
)

// startHTTPS runs serve with -https-listen and args, and returns the
// address and a client configuration that trusts it.
func startHTTPS(t *testing.T, args ...string) (string, *tls.Config) {
	t.Helper()
	certFile, keyFile, cert := testcert.Write(t, t.TempDir(), "server", "echod test")
	byProto, _ := startServeAll(t, 1, append([]string{"-https-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, args...)...)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return byProto["https"][0], &tls.Config{RootCAs: roots, ServerName: "localhost"}
}

// getFrom asks for the request echo of url from the local address src, and
// returns the status, or an error after 20 s.
func getFrom(t *testing.T, src, url string, cfg *tls.Config) (int, error) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	if cfg != nil {
		cfg = cfg.Clone() // net/http adds to NextProtos
	}
	tr := &http.Transport{DialContext: d.DialContext, TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// A request without a body from another address is answered while uploads
// that declared a megabyte and sent two bytes, or are chunked and sent no
// chunk, are held; before, 32 of them made it wait 59.5 s.
func TestServeWebBodilessBesideStalledUploads(t *testing.T) {
	for _, engine := range []string{"goroutine", "epoll"} {
		t.Run(engine, func(t *testing.T) {
			byProto, _ := startServeAll(t, 1, "-engine", engine, "-http-listen", "127.0.0.1:0")
			addr := byProto["http"][0]
			for i := range 64 {
				c := testkit.Dial(t, addr)
				head := "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nab"
				if i%2 == 1 {
					head = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
				}
				if _, err := io.WriteString(c, head); err != nil {
					t.Fatal(err)
				}
			}
			// Not even their own address waits behind them.
			if code, err := getFrom(t, "127.0.0.1", "http://"+addr+"/after", nil); code != 200 {
				t.Fatalf("GET from the uploads' own address: %d, %v", code, err)
			}
			if code, err := getFrom(t, "127.0.0.2", "http://"+addr+"/other", nil); code != 200 {
				t.Fatalf("GET from another address beside 64 stalled uploads: %d, %v", code, err)
			}
		})
	}
}

// The same with 32 stalled uploads as streams of one HTTP/2 connection,
// under -max-conns-per-ip 1.
func TestServeWebBodilessBesideStalledHTTP2Streams(t *testing.T) {
	addr, cfg := startHTTPS(t, "-max-conns-per-ip", "1")
	tr := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	var wg sync.WaitGroup
	defer wg.Wait()
	var pipes []*io.PipeWriter
	defer func() {
		for _, pw := range pipes {
			pw.CloseWithError(errors.New("test over"))
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 32 {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		req, err := http.NewRequestWithContext(ctx, "POST", "https://"+addr+"/up", pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = 1 << 20
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}()
		go pw.Write([]byte("ab"))
	}
	if code, err := getFrom(t, "127.0.0.2", "https://"+addr+"/other", cfg); code != 200 {
		t.Fatalf("GET from another address beside 32 stalled HTTP/2 streams: %d, %v", code, err)
	}
}

// -tls-handshake-timeout bounds the handshakes of -https-listen too, not
// only the 10 s net/http gives them.
func TestServeHTTPSHandshakeTimeout(t *testing.T) {
	addr, cfg := startHTTPS(t, "-tls-handshake-timeout", "300ms")
	c := testkit.Dial(t, addr)
	c.Write(halfClientHello(t))
	if code, err := getFrom(t, "127.0.0.1", "https://"+addr+"/", cfg); code != 200 {
		t.Fatalf("a valid client beside a hanging handshake: %d, %v", code, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("a hanging HTTPS handshake was still open after 5s, with a 300ms handshake timeout")
	}
}

// echod_connections_active counts the web connections too, which fill
// -max-conns like any other.
func TestServeWebConnectionsAreActiveConnections(t *testing.T) {
	for _, engine := range []string{"goroutine", "epoll"} {
		t.Run(engine, func(t *testing.T) {
			admin := testkit.FreeAddr(t, "tcp")
			byProto, _ := startServeAll(t, 2, "-engine", engine, "-http-listen", "127.0.0.1:0", "-admin", admin, "-max-conns", "3")
			var web string
			for _, a := range byProto["http"] {
				if a != admin {
					web = a
				}
			}
			for range 3 {
				c := testkit.Dial(t, web)
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // kept alive
				if _, err := c.Read(make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
			}
			waitMetric(t, admin, "3 web connections active", func(m map[string]float64) bool {
				return m["echod_connections_active"] == 3
			})
			if !strings.Contains(scrapeText(t, admin), "HTTP and HTTPS") {
				t.Error("echod_connections_active's help does not say it counts web connections")
			}
		})
	}
}

func scrapeText(t *testing.T, admin string) string {
	t.Helper()
	_, body := testkit.Get(t, "http://"+admin+"/metrics")
	return body
}

// -http-max-requests-per-ip bounds the requests in flight from one
// address: one past it is answered 429.
func TestServeWebMaxRequestsPerIP(t *testing.T) {
	byProto, _ := startServeAll(t, 1, "-http-listen", "127.0.0.1:0", "-http-max-requests-per-ip", "1")
	addr := byProto["http"][0]
	held := testkit.Dial(t, addr)
	io.WriteString(held, "POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
	if !testkit.Eventually(10*time.Second, func() bool {
		code, _ := getFrom(t, "127.0.0.1", "http://"+addr+"/second", nil)
		return code == http.StatusTooManyRequests
	}) {
		t.Fatal("a second request beside one in flight was never answered 429 under -http-max-requests-per-ip 1")
	}
	if code, err := getFrom(t, "127.0.0.2", "http://"+addr+"/other", nil); code != 200 {
		t.Fatalf("another address: %d, %v", code, err)
	}
}

// One HTTP/2 connection carries at most 32 requests at once (net/http
// offered 250), so that -max-conns-per-ip bounds requests too.
func TestServeHTTPSOffersFewStreams(t *testing.T) {
	addr, cfg := startHTTPS(t)
	cfg.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	s, ok := f.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	if n, ok := s.Value(http2.SettingMaxConcurrentStreams); !ok || n != 32 {
		t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS %d (given %v), want 32", n, ok)
	}
}
