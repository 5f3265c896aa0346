//go:build unix

package daemon

import (
	"syscall"
	"testing"
)

func TestRuntimeRaisesTheSoftFileLimit(t *testing.T) {
	// -max-conns is derived from the soft limit on the premise that Go has
	// raised it to (nearly) the hard limit at start; this checks it.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max-1 {
		t.Fatalf("soft open-file limit %d, hard %d: the runtime did not raise it", lim.Cur, lim.Max)
	}
}
