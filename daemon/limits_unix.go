//go:build unix

package daemon

import "syscall"

// fileLimit returns the soft limit on open files, which the Go runtime has
// already raised to (nearly) the hard limit at start (go.dev/issue/46279),
// or 0 if it cannot be read.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return uint64(lim.Cur)
}
