package main

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/tooltest"
)

// Real third-party clients, as people will use them against echod.
func TestThirdPartyClients(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	binary := make([]byte, 1<<20)
	pattern.NewStream(3).Read(binary)
	host, port, _ := net.SplitHostPort(addr)

	tests := []struct {
		name  string
		tool  string
		args  []string
		input []byte
	}{
		// -N: half-close on end of input, then wait for the server to close.
		{"netcat text", "nc", []string{"-N", host, port}, []byte("Ground Control To Major Tom")},
		{"netcat binary", "nc", []string{"-N", host, port}, binary},
		// -t: after half-closing, wait up to 10s for the server's close.
		{"socat binary", "socat", []string{"-t", "10", "-", "TCP:" + addr}, binary},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tooltest.Require(t, tt.tool)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, path, tt.args...)
			cmd.Stdin = bytes.NewReader(tt.input)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s: %v\n%s", tt.tool, err, stderr.String())
			}
			if !bytes.Equal(out, tt.input) {
				t.Fatalf("%s got %d bytes back of %d; first difference at %d", tt.tool, len(out), len(tt.input), pattern.FirstDiff(out, tt.input))
			}
		})
	}
}
