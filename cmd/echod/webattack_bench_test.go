//go:build linux

package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/echod/echod/internal/testcert"
)

// The attacks of issue 20 on the web echo, against a real echod process
// whose resident memory is read from /proc. ECHOD_BENCH_BIN names another
// echod binary to attack instead (an older build, for before and after):
//
//	go test ./cmd/echod -run '^$' -bench WebAttack -benchtime 1x

var listeningWeb = regexp.MustCompile(`msg=listening proto=(https?) addr=(\S+)`)

// startAttacked runs echod serve with HTTP and HTTPS listeners and args,
// and returns its pid and addresses.
func startAttacked(b *testing.B, args ...string) (pid int, httpAddr, httpsAddr string) {
	b.Helper()
	certFile, keyFile, _ := testcert.Write(b, b.TempDir(), "server", "echod bench")
	bin, env := os.Args[0], append(os.Environ(), "ECHOD_RUN_MAIN=1")
	if alt := os.Getenv("ECHOD_BENCH_BIN"); alt != "" {
		bin = alt
	}
	cmd := exec.Command(bin, append([]string{"serve", "-http-listen", "127.0.0.1:0", "-https-listen", "127.0.0.1:0",
		"-tls-cert", certFile, "-tls-key", keyFile}, args...)...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lines := bufio.NewScanner(stderr)
	for (httpAddr == "" || httpsAddr == "") && lines.Scan() {
		if m := listeningWeb.FindStringSubmatch(lines.Text()); m != nil && m[1] == "http" {
			httpAddr = m[2]
		} else if m != nil {
			httpsAddr = m[2]
		}
	}
	if httpAddr == "" || httpsAddr == "" {
		b.Fatalf("echod did not listen on HTTP and HTTPS: %v", lines.Err())
	}
	go io.Copy(io.Discard, stderr)
	return cmd.Process.Pid, httpAddr, httpsAddr
}

// residentMiB returns a process's resident memory now and at its peak.
func residentMiB(b *testing.B, pid int) (now, peak float64) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			now = kib / 1024
		case "VmHWM:":
			peak = kib / 1024
		}
	}
	return now, peak
}

// slowestGet returns the longest of n bodiless GETs of url from 127.0.0.2,
// each on a new connection, or fails after 70 s.
func slowestGet(b *testing.B, url string, n int) time.Duration {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	var times []time.Duration
	for range n {
		tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		start := time.Now()
		resp, err := (&http.Client{Transport: tr, Timeout: 70 * time.Second}).Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		times = append(times, time.Since(start))
	}
	return slices.Max(times)
}

func BenchmarkWebAttack(b *testing.B) {
	// 1,000 uploads that declare a megabyte and send two bytes, or are
	// chunked and send no chunk; then GETs from another address.
	b.Run("stalled-uploads", func(b *testing.B) {
		for b.Loop() {
			_, addr, _ := startAttacked(b)
			for i := range 1000 {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				head := "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\nab"
				if i%2 == 1 {
					head = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
				}
				io.WriteString(c, head)
			}
			time.Sleep(time.Second) // for the uploads to be read: this measures, it does not synchronise
			b.ReportMetric(float64(slowestGet(b, "http://"+addr+"/", 20).Microseconds())/1000, "slowest-GET-ms")
		}
	})
	// 64 keep-alive clients post 1 MiB bodies of 0x01 bytes, ten each.
	b.Run("64x1MiB-0x01", func(b *testing.B) {
		for b.Loop() {
			pid, addr, _ := startAttacked(b)
			body := bytes.Repeat([]byte{1}, 1<<20)
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					tr := &http.Transport{}
					defer tr.CloseIdleConnections()
					for range 10 {
						resp, err := (&http.Client{Transport: tr}).Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(body))
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			}
			wg.Wait()
			_, peak := residentMiB(b, pid)
			b.ReportMetric(peak, "peak-RSS-MiB")
		}
	})
	// One HTTP/2 connection with a shut window and 250 bodiless GETs, each
	// with 15 HPACK references to one 4,000-byte value of 0x80 bytes.
	b.Run("http2-shut-window", func(b *testing.B) {
		for b.Loop() {
			pid, _, addr := startAttacked(b)
			before, _ := residentMiB(b, pid)
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, http2.ClientPreface)
			fr := http2.NewFramer(c, c)
			var mu sync.Mutex
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
			go func() { // answers the server's SETTINGS until the connection closes
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
						mu.Lock()
						fr.WriteSettingsAck()
						mu.Unlock()
					}
				}
			}()
			var block bytes.Buffer
			enc := hpack.NewEncoder(&block)
			value := strings.Repeat("\x80", 4000)
			for i := range 250 {
				block.Reset()
				for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "x"}, {":path", "/"}} {
					enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
				}
				for range 15 {
					enc.WriteField(hpack.HeaderField{Name: "x-h", Value: value})
				}
				mu.Lock()
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
				mu.Unlock()
			}
			time.Sleep(3 * time.Second) // for the streams to be served: this measures, it does not synchronise
			now, _ := residentMiB(b, pid)
			b.ReportMetric(now-before, "RSS-growth-MiB")
		}
	})
}
