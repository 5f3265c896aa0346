//go:build unix

package bench

import (
	"fmt"
	"syscall"
)

// raiseFileLimit raises this process's limit on open files to what conns
// connections need, as far as the system lets it, and fails if it stays
// below.
func raiseFileLimit(conns int) error {
	need := conns + 64 // the runtime's own descriptors, and some to spare
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	want := uint64(need)
	if lim.Cur >= want {
		return nil
	}
	raised := lim
	raised.Cur = want
	if raised.Max < want {
		raised.Max = want // allowed for root (CAP_SYS_RESOURCE) only
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return nil
	}
	if lim.Max > lim.Cur {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	return fmt.Errorf("%d connections need about %d file descriptors, but this process may open only %d (ulimit -n); use fewer connections or raise the limit", conns, need, lim.Cur)
}
