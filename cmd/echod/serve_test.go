package main

import (
	"errors"
	"flag"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/daemon"
	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/testkit"
)

// Every duration and size from a flag is checked: negative, zero where a
// wait must end, and absurd values are usage errors naming the flag.
func TestServeRefusesOutOfRangeValues(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-idle-timeout", "2562047h"}, "-idle-timeout must be at most 8760h0m0s (a year), got 2562047h0m0s"},
		{[]string{"-max-session-duration", "9000h"}, "-max-session-duration must be at most 8760h0m0s"},
		{[]string{"-shutdown-timeout", "100000h"}, "-shutdown-timeout must be at most"},
		{[]string{"-tls-handshake-timeout", "0"}, "-tls-handshake-timeout must be more than 0"},
		{[]string{"-tls-handshake-timeout", "-1s"}, "-tls-handshake-timeout must not be negative"},
		{[]string{"-tls-handshake-timeout", "10000h"}, "-tls-handshake-timeout must be at most"},
		{[]string{"-proxy-protocol", "-proxy-header-timeout", "0s"}, "-proxy-header-timeout must be more than 0"},
		{[]string{"-proxy-protocol", "-proxy-header-timeout", "-5s"}, "-proxy-header-timeout must not be negative"},
		{[]string{"-proxy-protocol", "-proxy-pending-per-ip", "0"}, "-proxy-pending-per-ip must be at least 1, got 0"},
		{[]string{"-proxy-header-timeout", "1s"}, "-proxy-header-timeout needs -proxy-protocol"},
		{[]string{"-proxy-pending-per-ip", "5"}, "-proxy-pending-per-ip needs -proxy-protocol"},
		{[]string{"-max-conns", "99999999999999999999"}, "invalid value \"99999999999999999999\" for flag -max-conns"},
		{[]string{"-max-session-bytes", "-9223372036854775808"}, "-max-session-bytes must not be negative"},
		{[]string{"-idle-timeout", "9999999999h"}, "invalid value \"9999999999h\" for flag -idle-timeout"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errOut := runCmd(t, nil, append([]string{"serve"}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.wantErr) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line with %q", code, errOut, tt.wantErr)
			}
		})
	}
}

// The largest values accepted are served as given: a year of idle timeout
// is no overflow.
func TestServeAcceptsTheLargestValues(t *testing.T) {
	startServe(t, 1, "-listen", "127.0.0.1:0", "-proxy-protocol=false")
	addr := startServe(t, 1, "-listen", "127.0.0.1:0", "-idle-timeout", "8760h", "-max-session-duration", "8760h",
		"-tls-handshake-timeout", "8760h", "-max-session-bytes", "9223372036854775807")[0]
	c := dialEcho(t, addr)
	echoOn(t, c, "a year is fine")
}

// FuzzParseServe: whatever the arguments, parsing never panics, a mistake
// is one line, and what it accepts is within range.
func FuzzParseServe(f *testing.F) {
	for _, seed := range []string{
		"-idle-timeout 2562047h",
		"-listen 127.0.0.1:0 -udp -max-conns 10",
		"-proxy-protocol -proxy-header-timeout 1ns -proxy-pending-per-ip 1",
		"-tls-handshake-timeout 1h -max-session-bytes 1",
		"-shutdown-timeout -1s",
		"-max-conns-per-ip 18446744073709551616",
		"-engine epoll -log-level debug -log-format json",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		args := strings.Fields(line)
		var out testkit.Buffer
		cfg, err := parseServe(args, stdio{in: strings.NewReader(""), out: &out, err: &out})
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("parseServe(%q) = %v, not a usage error", args, err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("parseServe(%q): error of more than one line: %q", args, err)
			}
			return
		}
		srv := cfg.Server
		for _, d := range []time.Duration{cfg.ShutdownTimeout, srv.IdleTimeout, srv.MaxSessionDuration, cfg.ProxyHeaderTimeout, cfg.TLSHandshakeTimeout} {
			if d < 0 || d > maxDuration {
				t.Fatalf("parseServe(%q) accepted a duration of %v", args, d)
			}
		}
		if cfg.ProxyHeaderTimeout == 0 || cfg.TLSHandshakeTimeout == 0 || cfg.ProxyPendingPerIP < 1 {
			t.Fatalf("parseServe(%q) accepted a wait that never ends: %+v", args, cfg)
		}
		for _, n := range []int64{int64(srv.MaxConns), int64(srv.MaxConnsPerIP), srv.MaxSessionBytes, int64(srv.UDPSourceRate), int64(srv.UDPGlobalRate)} {
			if n < 0 {
				t.Fatalf("parseServe(%q) accepted a negative limit", args)
			}
		}
	})
}

// A port in use gets a hint naming the port and the flag, in one line.
func TestServeHintsAtAPortInUse(t *testing.T) {
	tcp := testkit.Listen(t)
	udp := testkit.ListenUDP(t, "127.0.0.1:0")
	_, tcpPort, _ := net.SplitHostPort(tcp.Addr().String())
	_, udpPort, _ := net.SplitHostPort(udp.LocalAddr().String())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-listen", tcp.Addr().String()}, "is another echod or server running on port " + tcpPort + "? pick another -listen port"},
		{[]string{"-udp-listen", udp.LocalAddr().String()}, "is another echod or server running on port " + udpPort + "? pick another -udp-listen port"},
		{[]string{"-listen", "127.0.0.1:0", "-admin", tcp.Addr().String()}, "-admin: listen tcp " + tcp.Addr().String()},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, _, errOut := runCmd(t, nil, append([]string{"serve"}, tt.args...)...)
			if code != 1 || !strings.Contains(errOut, "address already in use") || !strings.Contains(errOut, tt.want) || strings.Count(errOut, "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want exit 1 and one line with %q", code, errOut, tt.want)
			}
		})
	}
}

// A port below 1024 without the privilege to bind it gets a hint: another
// port, socket activation or setcap. Root may bind any port, so this runs
// only as another user (the daemon package tests the hint itself anywhere).
func TestServeHintsAtAPrivilegedPort(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("running as root, which may bind any port")
	}
	l, err := net.Listen("tcp", "127.0.0.1:7")
	if err == nil {
		l.Close()
		t.Skip("this user may bind port 7 (net.ipv4.ip_unprivileged_port_start or a capability)")
	}
	code, _, errOut := runCmd(t, nil, "serve", "-listen", "127.0.0.1:7")
	for _, want := range []string{"permission denied", "ports below 1024 need privileges", "socket activation", "setcap cap_net_bind_service=+ep"} {
		if code != 1 || !strings.Contains(errOut, want) || strings.Count(errOut, "\n") != 1 {
			t.Fatalf("exit %d, stderr %q; want exit 1 and one line with %q", code, errOut, want)
		}
	}
}

// echod serve without flags and daemon.Run with a zero Config serve with
// the same limits: a program that embeds the daemon is as safe as the
// command.
func TestServeDefaultsAreTheZeroConfigs(t *testing.T) {
	var out testkit.Buffer
	cfg, err := parseServe(nil, stdio{in: strings.NewReader(""), out: &out, err: &out})
	if err != nil {
		t.Fatal(err)
	}
	limits := func(s *echo.Server) []any {
		return []any{s.MaxConns, s.MaxConnsPerIP, s.IdleTimeout, s.MaxSessionDuration, s.MaxSessionBytes,
			s.UDPAllowPrivilegedPorts, s.UDPSourceRate, s.UDPGlobalRate}
	}
	flags, zero := cfg.Server, daemon.NewServer()
	if !reflect.DeepEqual(limits(flags), limits(zero)) {
		t.Errorf("the flags' limits %v, daemon.NewServer's %v", limits(flags), limits(zero))
	}
	if cfg.ShutdownTimeout != daemon.DefaultShutdownTimeout {
		t.Errorf("-shutdown-timeout defaults to %v, a zero Config's to %v", cfg.ShutdownTimeout, daemon.DefaultShutdownTimeout)
	}
	if cfg.Web.IdleTimeout != zero.IdleTimeout {
		t.Errorf("the web echo's idle timeout defaults to %v, a zero Config's to %v", cfg.Web.IdleTimeout, zero.IdleTimeout)
	}
}
