package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve runs a coder/websocket server that passes each message through
// change before sending it back (stopping after echoes echoes, when above
// 0), and returns its ws:// URL.
func serve(t *testing.T, echoes int, change func(websocket.MessageType, []byte) (websocket.MessageType, []byte)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for n := 1; ; n++ {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			typ, msg = change(typ, msg)
			if err := c.Write(r.Context(), typ, msg); err != nil || n == echoes {
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/any/path"
}

func same(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte) { return typ, msg }

// runJSON runs wsload and returns its error and its result.
func runJSON(t *testing.T, args ...string) (result, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	var res result
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
			t.Fatalf("output is not one JSON result: %v\n%s", jerr, out.String())
		}
	}
	return res, err
}

func TestPingPongVerifiesEveryEcho(t *testing.T) {
	// A server that echoes each message in place of the one before (after
	// its first): right type and length, stale bytes.
	var mu sync.Mutex
	var last []byte
	stale := func(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte) {
		mu.Lock()
		defer mu.Unlock()
		prev := last
		last = msg
		if prev == nil {
			return typ, msg
		}
		return typ, prev
	}
	for _, tc := range []struct {
		name   string
		change func(websocket.MessageType, []byte) (websocket.MessageType, []byte)
		want   string // the first mismatch; "" for none
	}{
		{"faithful", same, ""},
		{"one byte flipped", func(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte) {
			msg[37] ^= 0x20
			return typ, msg
		}, "a binary message of 100 bytes came back changed: byte 37 is"},
		{"as text", func(_ websocket.MessageType, msg []byte) (websocket.MessageType, []byte) {
			return websocket.MessageText, msg
		}, "a binary message of 100 bytes came back as a text message"},
		{"cut short", func(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte) {
			return typ, msg[:99]
		}, "a binary message of 100 bytes came back as 99 bytes"},
		{"doubled", func(typ websocket.MessageType, msg []byte) (websocket.MessageType, []byte) {
			return typ, append(msg, msg...)
		}, "an echo longer than the 100 bytes sent"},
		{"the previous message", stale, "a binary message of 100 bytes came back changed: byte 0 is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serve(t, 0, tc.change)
			res, err := runJSON(t, "-mode", "pingpong", "-c", "1", "-size", "100", "-d", "100ms", "-warmup", "0", url)
			if tc.want == "" {
				if err != nil || res.Mismatches != 0 || res.Errors != 0 || res.RoundTrips == 0 {
					t.Fatalf("faithful server: err %v, result %+v", err, res)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one with %q", err, tc.want)
			}
			if res.Mismatches != 1 || !strings.HasPrefix(res.FirstMismatch, tc.want) {
				t.Errorf("result: %d mismatches, the first %q; want 1, %q", res.Mismatches, res.FirstMismatch, tc.want)
			}
		})
	}
}

func TestPingPongManyConnections(t *testing.T) {
	url := serve(t, 0, same)
	res, err := runJSON(t, "-c", "20", "-size", "3000", "-d", "100ms", "-warmup", "10ms", "-pid", strconv.Itoa(os.Getpid()), url)
	if err != nil || res.Conns != 20 || res.RoundTrips == 0 || res.Errors != 0 {
		t.Fatalf("err %v, result %+v", err, res)
	}
}

func TestIdle(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	res, err := runJSON(t, "-mode", "idle", "-c", "50", "-settle", "0", "-pid", pid, serve(t, 0, same))
	if err != nil || res.Open != 50 || res.RSSBefore == 0 || res.RSSAfter == 0 || res.Errors != 0 {
		t.Fatalf("err %v, result %+v", err, res)
	}

	// A server that ends each connection after its first echo would look
	// small: it is told.
	res, err = runJSON(t, "-mode", "idle", "-c", "5", "-settle", "0", "-pid", pid, serve(t, 1, same))
	if err == nil || res.Open != 5 || res.Errors != 5 || !strings.HasPrefix(res.FirstError, "after the hold: ") {
		t.Fatalf("err %v, result %+v", err, res)
	}
}

func TestSilentServers(t *testing.T) {
	// One that accepts connections and never answers the upgrade: the
	// first connection fails, and no more are tried.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	held.Go(func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	})
	t.Cleanup(func() {
		l.Close()
		held.Wait()
	})
	pid := strconv.Itoa(os.Getpid())
	res, err := runJSON(t, "-mode", "idle", "-c", "1000", "-timeout", "200ms", "-settle", "0", "-pid", pid, l.Addr().String())
	if err == nil || res.Open != 0 || res.Errors != 1 || !strings.Contains(res.FirstError, "connection 1: read the answer to the upgrade request") {
		t.Errorf("a server that never answers the upgrade: err %v, result %+v", err, res)
	}

	// One that upgrades and reads, but never echoes: each connection
	// gives up at its deadline.
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(r.Context()); err != nil {
				return
			}
		}
	}))
	t.Cleanup(func() {
		mute.CloseClientConnections()
		mute.Close()
	})
	res, err = runJSON(t, "-c", "3", "-timeout", "100ms", "-d", "100ms", "-warmup", "0", "ws"+strings.TrimPrefix(mute.URL, "http")+"/")
	if err == nil || res.RoundTrips != 0 || res.Errors != 3 || !strings.HasPrefix(res.FirstError, "no whole echo in time: 0 of 64 bytes came back") {
		t.Errorf("a server that never echoes: err %v, result %+v", err, res)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "want one ws://HOST:PORT/PATH, got 0 arguments"},
		{[]string{"-mode", "bulk", "127.0.0.1:1"}, `unknown -mode "bulk"`},
		{[]string{"-mode", "idle", "127.0.0.1:1"}, "-mode idle needs -pid"},
		{[]string{"-size", "0", "127.0.0.1:1"}, "-size 0: want 1 to"},
		{[]string{"-c", "-3", "127.0.0.1:1"}, "-c -3: want 1 to"},
		{[]string{"wss://127.0.0.1:1/"}, "(no TLS)"},
		{[]string{"ws://127.0.0.1/"}, "want ws://HOST:PORT/PATH"},
		{[]string{"-source", "127.0.0.9-127.0.0.1", "127.0.0.1:1"}, "-source: invalid source range"},
	} {
		_, err := runJSON(t, tc.args...)
		var ue *usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
}
