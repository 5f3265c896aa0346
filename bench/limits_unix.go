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
	if uint64(lim.Cur) >= want {
		return nil
	}
	raised := lim
	setRlim(&raised.Cur, want)
	if uint64(raised.Max) < want {
		setRlim(&raised.Max, want) // allowed for root (CAP_SYS_RESOURCE) only
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

// setRlim sets a field of syscall.Rlimit, which is a uint64 on Linux and
// macOS but an int64 on FreeBSD.
func setRlim[T int64 | uint64](field *T, n uint64) { *field = T(n) }
