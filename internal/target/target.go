// Package target parses the address of a server under test as the send,
// check and bench commands take it: HOST:PORT, HOST and PORT as two
// arguments (netcat's habit), or a URL that names the transport: tcp:// (the
// default), udp://, tls://, ws:// or wss://.
package target

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Transport is how a target is reached.
type Transport string

// The transports a target can name.
const (
	TCP Transport = "tcp"
	UDP Transport = "udp"
	TLS Transport = "tls"
	WS  Transport = "ws"  // WebSocket
	WSS Transport = "wss" // WebSocket over TLS
)

// Target is a parsed address.
type Target struct {
	Transport Transport
	// Host is a name or an IP address, without brackets; empty means
	// this machine.
	Host string
	// Port is a number from 1 to 65535.
	Port string
	// Path is, for WS and WSS, the path and query of the URL ("/" when
	// it has none); empty for the other transports.
	Path string
}

// Addr returns HOST:PORT, with brackets around an IPv6 host.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, t.Port) }

// String returns HOST:PORT for TCP, and the URL for the other transports:
// the shortest form that Parse reads back as t.
func (t Target) String() string {
	if t.Transport == TCP {
		return t.Addr()
	}
	return t.URL()
}

// URL returns the target as a URL, such as tcp://127.0.0.1:7007.
func (t Target) URL() string {
	return string(t.Transport) + "://" + t.Addr() + t.Path
}

// IsWebSocket reports whether t is a ws:// or wss:// URL.
func (t Target) IsWebSocket() bool { return t.Transport == WS || t.Transport == WSS }

// example is the address the error messages show.
const example = "127.0.0.1:7007"

// Parse parses one address: HOST:PORT or a URL naming the transport.
func Parse(s string) (Target, error) {
	if s == "" {
		return Target{}, fmt.Errorf("empty address: want HOST:PORT, such as %s", example)
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		return parseURL(s, strings.ToLower(scheme))
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Target{}, explain(s, err)
	}
	return newTarget(s, TCP, host, port, "")
}

// FromArgs reads an address from the start of args: HOST:PORT or a URL in
// one argument, or a HOST and a PORT in two. It returns the target and how
// many arguments it used.
func FromArgs(args []string) (Target, int, error) {
	if len(args) == 0 {
		return Target{}, 0, fmt.Errorf("no address given: want HOST:PORT, such as %s", example)
	}
	if len(args) >= 2 && !strings.Contains(args[0], "://") && isPortNumber(args[1]) {
		if _, _, err := net.SplitHostPort(args[0]); err != nil {
			t, err := newTarget(args[0]+" "+args[1], TCP, args[0], args[1], "")
			return t, 2, err
		}
	}
	t, err := Parse(args[0])
	return t, 1, err
}

func parseURL(s, scheme string) (Target, error) {
	tr := Transport(scheme)
	switch tr {
	case TCP, UDP, TLS, WS, WSS:
	case "http", "https":
		return Target{}, fmt.Errorf("invalid address %q: %s:// is for web pages; want tcp://, udp://, tls://, ws:// or wss://", s, scheme)
	default:
		return Target{}, fmt.Errorf("invalid address %q: unknown transport %q: want tcp://, udp://, tls://, ws:// or wss://", s, scheme)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Target{}, fmt.Errorf("invalid address %q: %v", s, err)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return Target{}, fmt.Errorf("invalid address %q: want %s://HOST:PORT", s, scheme)
	}
	port := u.Port()
	if port == "" {
		switch {
		case tr == WS:
			port = "80"
		case tr == WSS:
			port = "443"
		case strings.HasSuffix(u.Host, ":"):
			return Target{}, fmt.Errorf("invalid address %q: empty port: want %s://HOST:PORT", s, scheme)
		default:
			return Target{}, fmt.Errorf("invalid address %q: missing port: want %s://HOST:PORT", s, scheme)
		}
	}
	path := ""
	if tr == WS || tr == WSS {
		path = u.EscapedPath()
		if path == "" {
			path = "/"
		}
		if u.RawQuery != "" {
			path += "?" + u.RawQuery
		}
	} else if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return Target{}, fmt.Errorf("invalid address %q: a %s address has no path: want %s://HOST:PORT", s, scheme, scheme)
	}
	return newTarget(s, tr, u.Hostname(), port, path)
}

// newTarget checks host and port, which came from s.
func newTarget(s string, tr Transport, host, port, path string) (Target, error) {
	if !isPortNumber(port) {
		return Target{}, fmt.Errorf("invalid address %q: port %q is not a number from 1 to 65535", s, port)
	}
	// An IPv6 zone (%eth0) is refused with the rest: it would need
	// escaping in a URL.
	if strings.ContainsAny(host, " /\\@[]?#%\t\r\n") || (strings.Contains(host, ":") && net.ParseIP(host) == nil) {
		return Target{}, fmt.Errorf("invalid address %q: %q is not a host name or IP address", s, host)
	}
	return Target{Transport: tr, Host: host, Port: port, Path: path}, nil
}

// isPortNumber reports whether s is a decimal port number from 1 to 65535.
func isPortNumber(s string) bool {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}

// explain turns net.SplitHostPort's error about s into one for people.
func explain(s string, err error) error {
	switch {
	case isPortNumber(s):
		return fmt.Errorf("invalid address %q: a port alone; want HOST:PORT, such as 127.0.0.1:%s", s, s)
	case strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
		return fmt.Errorf("invalid address %q: put an IPv6 address in brackets, as in [::1]:7007", s)
	case !strings.Contains(s, ":"):
		return fmt.Errorf("invalid address %q: missing port: want HOST:PORT, such as %s", s, example)
	}
	var ae *net.AddrError
	if errors.As(err, &ae) {
		err = errors.New(ae.Err)
	}
	return fmt.Errorf("invalid address %q: %v: want HOST:PORT, such as %s", s, err, example)
}
