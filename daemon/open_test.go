package daemon

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The hints for the two errors a beginner meets first, as the standard
// library reports them (root may bind any port, so a real privileged-port
// error cannot be provoked everywhere).
func TestExplainListenErrors(t *testing.T) {
	listenErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	tests := []struct {
		err        error
		addr, flag string
		want       string // "" for no hint
	}{
		{listenErr(syscall.EADDRINUSE), ":7007", "-listen", "address already in use: is another echod or server running on port 7007? pick another -listen port"},
		{listenErr(syscall.EACCES), "0.0.0.0:7", "-listen", "permission denied: ports below 1024 need privileges: pick a port of 1024 or more (such as -listen :7007), " +
			"let systemd open it (socket activation, see deploy/systemd), or allow the binary with 'setcap cap_net_bind_service=+ep'"},
		{listenErr(syscall.EACCES), "[::]:443", "-tls-listen", "such as -tls-listen :7007"},
		{listenErr(syscall.EACCES), "127.0.0.1:8080", "-listen", ""}, // not a privileged port: some other cause
		{listenErr(syscall.EADDRNOTAVAIL), "192.0.2.1:7007", "-listen", ""},
	}
	for _, tt := range tests {
		got := explain(tt.err, tt.addr, tt.flag).Error()
		if tt.want == "" {
			if got != tt.err.Error() {
				t.Errorf("explain(%v) = %q, want no hint", tt.err, got)
			}
			continue
		}
		if !strings.Contains(got, tt.want) || strings.Contains(got, "\n") {
			t.Errorf("explain(%v, %s) = %q, want one line with %q", tt.err, tt.addr, got, tt.want)
		}
	}
}
