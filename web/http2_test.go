package web

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/echod/echod/internal/testkit"
)

// h2Client is a bare HTTP/2 client that sends what it is told and counts
// the streams answered in full, as an attacker's would.
type h2Client struct {
	mu   sync.Mutex // writes
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	done atomic.Int64 // streams ended by the server
	read sync.WaitGroup
}

// dialH2 opens an HTTP/2 connection to srv whose initial stream window is
// window: zero, and the server may send no byte of any answer.
func dialH2(t *testing.T, srv *httptest.Server, window uint32) *h2Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c, err := tls.Dial("tcp", strings.TrimPrefix(srv.URL, "https://"), &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}, ServerName: "example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	h := &h2Client{fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.hbuf)
	h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: window})
	h.read.Add(1)
	go func() {
		defer h.read.Done()
		for {
			f, err := h.fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				h.mu.Lock()
				h.fr.WriteSettingsAck()
				h.mu.Unlock()
			}
			if f.Header().Flags.Has(http2.FlagDataEndStream) && f.Header().StreamID != 0 {
				if _, isData := f.(*http2.DataFrame); isData {
					h.done.Add(1)
				}
			}
		}
	}()
	t.Cleanup(func() {
		c.Close()
		h.read.Wait()
	})
	return h
}

// get sends a bodiless GET on stream id with headers, HPACK-encoded: a
// header sent before is a reference of a byte or two.
func (h *h2Client) get(t *testing.T, id uint32, headers ...string) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hbuf.Reset()
	fields := append([]string{":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/" + strconv.Itoa(int(id))}, headers...)
	for i := 0; i < len(fields); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// Streams of an HTTP/2 connection whose window stays shut hold no more of
// the budget than the connection's share: the echo of each is charged
// (its headers, which a 0x80 byte makes six bytes of JSON) before it is
// built, and those past the share wait. Before, 250 such streams built
// 143 MiB of JSON from 14 KiB sent, held until the write timeout.
func TestHTTP2StreamsWithAShutWindowAreBounded(t *testing.T) {
	const streams = 100
	h := &Handler{MaxBody: 1024, BodyMemory: 1}
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	c := dialH2(t, srv, 0)
	value := strings.Repeat("\x80", 4000)
	var headers []string
	for range 15 {
		headers = append(headers, "x-h", value)
	}
	for i := range streams {
		c.get(t, uint32(2*i+1), headers...)
	}
	testkit.WaitFor(t, "every stream to reach the handler", func() bool { return inFlight(h) == streams })
	b := h.budget()
	used, _ := b.usage()
	if got := h.Stats().Requests; got >= streams || used > b.perConn {
		t.Fatalf("%d of %d streams with a shut window were charged, %d bytes; want fewer, within the connection's share of %d",
			got, streams, used, b.perConn)
	}

	// The window opens: every stream is answered, and gives its charge
	// back.
	c.mu.Lock()
	c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	c.fr.WriteWindowUpdate(0, 1<<30)
	c.mu.Unlock()
	if !testkit.Eventually(20*time.Second, func() bool { return c.done.Load() == streams }) {
		t.Fatalf("%d of %d streams answered once the window opened", c.done.Load(), streams)
	}
	testkit.WaitFor(t, "the budget to be given back", func() bool { used, _ := b.usage(); return used == 0 })
}
