package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// served is how long the victim's requests may take while the attacks
// run: generous for a loaded machine, and far below the stalls of issue 20
// (35 to 59 seconds).
const served = 5 * time.Second

// victim is a well-behaved client on its own address, src: one TCP echo, one
// WebSocket echo, one HTTP request and one UDP echo, each within served.
func victim(t *testing.T, src, tcp, udp, web string) {
	t.Helper()
	start := time.Now()
	c := testkit.DialFrom(t, src, tcp)
	echoOn(t, c, "Ground Control")
	c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), served)
	defer cancel()
	ws := dialWebSocket(ctx, t, src, web)
	if _, err := ws.Write([]byte("Major Tom")); err != nil {
		t.Fatalf("WebSocket from %s: %v", src, err)
	}
	got := make([]byte, len("Major Tom"))
	if _, err := io.ReadFull(ws, got); err != nil || string(got) != "Major Tom" {
		t.Fatalf("WebSocket echo from %s: %q, %v", src, got, err)
	}
	ws.Close()

	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+web+"/victim", nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET from %s: %v", src, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET from %s: status %d", src, resp.StatusCode)
	}

	pc, err := net.ListenPacket("udp", src+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ua, _ := net.ResolveUDPAddr("udp", udp)
	if got := udpEcho(t, pc, ua, "Can you hear me"); got != "Can you hear me" {
		t.Fatalf("UDP echo from %s = %q", src, got)
	}
	if took := time.Since(start); took > served {
		t.Errorf("the victim at %s was served in %v while the attacks ran, want well under %v", src, took, served)
	}
}

// TestPublicProfileUnderAttack runs the attacks of issue 20 against echod
// serve -public, together and bounded in time: from 127.0.0.1 a bandwidth
// hog over TCP and WebSocket, a flood of connections and one of datagrams;
// from 127.0.0.3 slow uploads; from 127.0.0.4 big bodies read slowly. A
// client on 127.0.0.2 is served throughout (TCP, WebSocket, HTTP and UDP
// echo); the hog gets its 1 MB/s and its 50 connections, no more; and
// /metrics tells what happened.
func TestPublicProfileUnderAttack(t *testing.T) {
	byProto, _ := startServeAll(t, 4, "-public", "-listen", "127.0.0.1:0", "-udp",
		"-http-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0")
	tcp, udp, web, admin := byProto["tcp"][0], byProto["udp"][0], byProto["http"][0], byProto["http"][1]
	testkit.DialFrom(t, "127.0.0.2", tcp).Close() // skips where 127.0.0.2 is not usable
	begin := time.Now()
	victim(t, "127.0.0.2", tcp, udp, web)
	t.Logf("victim served in %v", time.Since(begin))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// The hog: 8 TCP connections and 8 WebSockets taking all they can.
	var hogged atomic.Int64
	for range 8 {
		hog(ctx, &wg, testkit.DialFrom(t, "127.0.0.1", tcp), &hogged)
		hog(ctx, &wg, dialWebSocket(ctx, t, "127.0.0.1", web), &hogged)
	}
	t.Logf("hogs started after %v", time.Since(begin))
	// A flood of connections: 50 more from the same address, of which the
	// 34 that fit under -max-conns-per-ip 50 beside the hog's 16 are served.
	admitted, refusals := 0, 0
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: served}
	for range 50 {
		c, err := d.Dial("tcp", tcp)
		if err != nil {
			refusals++ // reset before the handshake finished on this side
			continue
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(served))
		c.Write([]byte("x"))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			refusals++
		} else {
			admitted++
		}
	}
	t.Logf("flood done after %v", time.Since(begin))
	if admitted != 34 || refusals != 16 {
		t.Errorf("of 50 more connections from the hog's address %d were served and %d refused, want 34 and 16", admitted, refusals)
	}
	// A flood of datagrams, 3,000 as fast as they go.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ua, _ := net.ResolveUDPAddr("udp", udp)
	for i := range 3000 {
		pc.WriteTo([]byte{byte(i), byte(i >> 8), 1, 2, 3}, ua)
	}

	// Slow uploads: 32 requests from another address that declare a
	// 1 MiB body and send 2 bytes of it (issue 20's first defect).
	for range 32 {
		c := testkit.DialFrom(t, "127.0.0.3", web)
		fmt.Fprintf(c, "POST /slow HTTP/1.1\r\nHost: echod\r\nContent-Length: 1048576\r\n\r\nxx")
	}
	// Big bodies: 4 clients from a fourth address post 1 MiB of 0x01
	// bytes, each 6 bytes of JSON in the echo, and read the answer slowly.
	for range 4 {
		c := testkit.DialFrom(t, "127.0.0.4", web)
		wg.Go(func() {
			fmt.Fprintf(c, "POST /big HTTP/1.1\r\nHost: echod\r\nContent-Length: %d\r\n\r\n", 1<<20)
			c.Write(bytes.Repeat([]byte{1}, 1<<20))
			buf := make([]byte, 1024)
			for ctx.Err() == nil {
				if _, err := c.Read(buf); err != nil {
					return
				}
				time.Sleep(10 * time.Millisecond) // a slow reader, by design
			}
		})
	}

	start, h0 := time.Now(), hogged.Load()
	victim(t, "127.0.0.2", tcp, udp, web)
	time.Sleep(2 * time.Second) // a window of measurement, not synchronization
	rate := float64(hogged.Load()-h0) / time.Since(start).Seconds()
	t.Logf("the hog's 16 connections got %.3f MB/s", rate/1e6)
	if rate > 1.1e6 {
		t.Errorf("the hog got %.0f bytes/s, want at most 1.1 MB/s (-rate-per-ip 1MB/s)", rate)
	}

	m := scrape(t, admin)
	// The datagrams met -udp-source-rate, or the address's bandwidth the
	// hog had taken, or both: which, depends on how fast they arrived.
	if m[`echod_rejected_total{reason="udp-rate-limit"}`]+m[`echod_rejected_total{reason="udp-bandwidth"}`] == 0 {
		t.Error("no datagram of the flood was dropped")
	}
	for _, series := range []string{
		`echod_rejected_total{reason="max-conns-per-ip"}`,
		`echod_egress_used_bytes`,
		`echod_bandwidth_throttled_seconds_total`,
	} {
		if m[series] <= 0 {
			t.Errorf("%s = %v, want more than 0", series, m[series])
		}
	}
	if m["echod_egress_budget_bytes"] != 100e9 || m["echod_egress_stage"] != 0 {
		t.Errorf("egress budget %v, stage %v; want 100 GB and normal", m["echod_egress_budget_bytes"], m["echod_egress_stage"])
	}
	var applied []string
	for k, v := range m {
		if strings.HasPrefix(k, "echod_rejected_total") && v > 0 {
			applied = append(applied, fmt.Sprintf("%s=%v", k, v))
		}
	}
	t.Logf("limits applied: %s", strings.Join(applied, " "))
}
