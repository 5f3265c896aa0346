package target

import (
	"context"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestFromArgs(t *testing.T) {
	tests := []struct {
		args []string
		want Target
		used int
	}{
		{[]string{"127.0.0.1:7007"}, Target{TCP, "127.0.0.1", "7007", ""}, 1},
		{[]string{"127.0.0.1:7007", "hello"}, Target{TCP, "127.0.0.1", "7007", ""}, 1},
		{[]string{"127.0.0.1:7007", "42"}, Target{TCP, "127.0.0.1", "7007", ""}, 1},
		{[]string{"localhost", "7007"}, Target{TCP, "localhost", "7007", ""}, 2},
		{[]string{"localhost", "7007", "hello"}, Target{TCP, "localhost", "7007", ""}, 2},
		{[]string{"::1", "7007"}, Target{TCP, "::1", "7007", ""}, 2},
		{[]string{"[::1]:7007"}, Target{TCP, "::1", "7007", ""}, 1},
		{[]string{":7007"}, Target{TCP, "", "7007", ""}, 1},
		{[]string{"tcp://example.com:7"}, Target{TCP, "example.com", "7", ""}, 1},
		{[]string{"TCP://example.com:7/"}, Target{TCP, "example.com", "7", ""}, 1},
		{[]string{"udp://[::1]:7007"}, Target{UDP, "::1", "7007", ""}, 1},
		{[]string{"tls://localhost:7443"}, Target{TLS, "localhost", "7443", ""}, 1},
		{[]string{"ws://localhost:8080/echo"}, Target{WS, "localhost", "8080", "/echo"}, 1},
		{[]string{"ws://localhost"}, Target{WS, "localhost", "80", "/"}, 1},
		{[]string{"wss://example.com/ws?room=1"}, Target{WSS, "example.com", "443", "/ws?room=1"}, 1},
		{[]string{"wss://example.com:8443/a%20b"}, Target{WSS, "example.com", "8443", "/a%20b"}, 1},
	}
	for _, tt := range tests {
		got, used, err := FromArgs(tt.args)
		if err != nil || got != tt.want || used != tt.used {
			t.Errorf("FromArgs(%q) = %+v, %d, %v; want %+v, %d", tt.args, got, used, err, tt.want, tt.used)
		}
	}
}

// Each mistake gets its own one-line explanation.
func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `empty address: want HOST:PORT, such as 127.0.0.1:7007`},
		{"localhost", `invalid address "localhost": missing port: want HOST:PORT, such as 127.0.0.1:7007`},
		{"7007", `invalid address "7007": a port alone; want HOST:PORT, such as 127.0.0.1:7007`},
		{"::1:7007", `invalid address "::1:7007": put an IPv6 address in brackets, as in [::1]:7007`},
		{"localhost:http", `invalid address "localhost:http": port "http" is not a number from 1 to 65535`},
		{"localhost:0", `invalid address "localhost:0": port "0" is not a number from 1 to 65535`},
		{"localhost:70000", `invalid address "localhost:70000": port "70000" is not a number from 1 to 65535`},
		{"local host:7", `invalid address "local host:7": "local host" is not a host name or IP address`},
		{"http://localhost:8080", `invalid address "http://localhost:8080": http:// is for web pages; want tcp://, udp://, tls://, ws:// or wss://`},
		{"sctp://localhost:7", `invalid address "sctp://localhost:7": unknown transport "sctp": want tcp://, udp://, tls://, ws:// or wss://`},
		{"tcp://localhost", `invalid address "tcp://localhost": missing port: want tcp://HOST:PORT`},
		{"tls://localhost:", `invalid address "tls://localhost:": empty port: want tls://HOST:PORT`},
		{"udp://localhost:7/echo", `invalid address "udp://localhost:7/echo": a udp address has no path: want udp://HOST:PORT`},
		{"tcp://user@localhost:7", `invalid address "tcp://user@localhost:7": want tcp://HOST:PORT`},
		{"[fe80::1%eth0]:7", `invalid address "[fe80::1%eth0]:7": "fe80::1%eth0" is not a host name or IP address`},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q) = %v, want %q", tt.in, err, tt.want)
		}
	}
	if _, _, err := FromArgs(nil); err == nil || err.Error() != "no address given: want HOST:PORT, such as 127.0.0.1:7007" {
		t.Errorf("FromArgs(nil) = %v", err)
	}
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://[::1]:7007":       "[::1]:7007",
		"127.0.0.1:7":            "127.0.0.1:7",
		"UDP://127.0.0.1:7":      "udp://127.0.0.1:7",
		"ws://localhost:80/echo": "ws://localhost:80/echo",
	} {
		tg, err := Parse(in)
		if err != nil || tg.String() != want {
			t.Errorf("Parse(%q).String() = %q, %v; want %q", in, tg.String(), err, want)
		}
	}
}

// Whatever the input, Parse returns a target or a one-line error, and what
// String makes of a target parses back to the same target.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"127.0.0.1:7007", "[::1]:7", "ws://h/p?q=1", "tls://h:1", "udp://[::1]:9", "x", "::1", "tcp://:7", "wss://h:443/%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			if msg := err.Error(); msg == "" || containsNewline(msg) && !containsNewline(s) {
				t.Fatalf("Parse(%q): error %q", s, msg)
			}
			return
		}
		back, err := Parse(tg.String())
		if err != nil || back != tg {
			t.Fatalf("Parse(%q) = %+v, but its String %q parses as %+v, %v", s, tg, tg.String(), back, err)
		}
	})
}

func containsNewline(s string) bool {
	for _, r := range s {
		if r == '\n' {
			return true
		}
	}
	return false
}

func TestResolvePrefersIPv4(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7": "127.0.0.1:7",
		"[::1]:7":     "[::1]:7",
		":7":          ":7",
		"localhost:7": "127.0.0.1:7",
	} {
		got, err := Resolve(context.Background(), in)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
