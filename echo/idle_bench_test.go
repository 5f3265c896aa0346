package echo

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/proxied"
	"github.com/echod/echod/internal/testcert"
)

// idleConns is how many idle connections BenchmarkIdleConnMemory opens.
var idleConns = flag.Int("idle-conns", 1000, "how many idle connections BenchmarkIdleConnMemory opens")

// idleClientsEnv tells this test binary, run as BenchmarkIdleConnMemory's
// child, to be the clients: "KIND ADDR N CERTFILE".
const idleClientsEnv = "ECHOD_IDLE_CLIENTS"

// BenchmarkIdleConnMemory measures what an idle connection costs the
// server after one 32 KiB echo, for each kind of connection and engine: the
// growth of the heap and of goroutine stacks over -idle-conns connections,
// divided by their number. The clients run in a child process (this test
// binary, see TestIdleClients), so that what is measured is the server's
// alone. The iteration count does not matter; run it once:
//
//	go test ./echo -run '^$' -bench IdleConnMemory -benchtime 1x
func BenchmarkIdleConnMemory(b *testing.B) {
	certFile, keyFile, _ := testcert.Write(b, b.TempDir(), "server", "echod test")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		b.Fatal(err)
	}
	listen := map[string]func(net.Listener) net.Listener{
		"plain": func(l net.Listener) net.Listener { return l },
		"tls": func(l net.Listener) net.Listener {
			return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{pair}})
		},
		"proxy": func(l net.Listener) net.Listener { return proxied.NewListener(l, proxied.Config{}) },
	}
	for _, engine := range testEngines() {
		for _, kind := range []string{"plain", "tls", "proxy"} {
			b.Run(engine+"/"+kind, func(b *testing.B) {
				inner, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				l := listen[kind](inner)
				srv := &Server{Engine: engine}
				done := make(chan error, 1)
				go func() { done <- srv.Serve(context.Background(), l) }()
				defer func() {
					srv.Close()
					if err := <-done; !errors.Is(err, ErrServerClosed) {
						b.Errorf("Serve returned %v", err)
					}
				}()
				heap0, stack0 := memInUse()
				goroutines0 := runtime.NumGoroutine()
				cmd := exec.Command(os.Args[0], "-test.run=^TestIdleClients$")
				cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %d %s", idleClientsEnv, kind, l.Addr(), *idleConns, certFile))
				cmd.Stderr = os.Stderr
				stdin, err := cmd.StdinPipe()
				if err != nil {
					b.Fatal(err)
				}
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					b.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					b.Fatal(err)
				}
				defer cmd.Wait()
				defer stdin.Close()
				// The child says "ready" once every connection has had
				// its echo back.
				lines := bufio.NewScanner(stdout)
				for lines.Scan() && lines.Text() != "ready" {
				}
				if lines.Err() != nil {
					b.Fatal(lines.Err())
				}
				for deadline := time.Now().Add(10 * time.Second); srv.Stats().Conns != *idleConns; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						b.Fatalf("%d connections open, want %d", srv.Stats().Conns, *idleConns)
					}
				}
				heap1, stack1 := memInUse()
				b.ReportMetric(float64(runtime.NumGoroutine()-goroutines0)/float64(*idleConns), "goroutines/conn")
				b.ReportMetric(float64(int64(heap1)-int64(heap0))/float64(*idleConns), "heap-B/conn")
				b.ReportMetric(float64(int64(stack1)-int64(stack0))/float64(*idleConns), "stack-B/conn")
				b.ReportMetric(float64(int64(heap1+stack1)-int64(heap0+stack0))/float64(*idleConns), "B/conn")
				go io.Copy(io.Discard, stdout)
			})
		}
	}
}

// memInUse returns the bytes of heap and of goroutine stacks in use, once
// garbage has been collected.
func memInUse() (heap, stack uint64) {
	var m runtime.MemStats
	for range 3 {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapInuse, m.StackInuse
}

// TestIdleClients is BenchmarkIdleConnMemory's child process: it opens the
// connections, echoes 32 KiB over each, says "ready", and holds them idle
// until its stdin closes.
func TestIdleClients(t *testing.T) {
	spec := os.Getenv(idleClientsEnv)
	if spec == "" {
		t.Skip("the client process of BenchmarkIdleConnMemory")
	}
	f := strings.Fields(spec)
	if len(f) != 4 {
		t.Fatalf("%s=%q: want KIND ADDR N CERTFILE", idleClientsEnv, spec)
	}
	kind, addr, certFile := f[0], f[1], f[3]
	n, err := strconv.Atoi(f[2])
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	msg := payload(15, 32<<10)
	for range n {
		c := dial(t, addr)
		c.SetDeadline(time.Time{})
		var conn net.Conn = c
		switch kind {
		case "tls":
			conn = tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
		case "proxy":
			if _, err := io.WriteString(c, "PROXY TCP4 192.0.2.1 127.0.0.1 40000 7007\r\n"); err != nil {
				t.Fatal(err)
			}
		}
		roundTrip(t, conn, msg)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
}
