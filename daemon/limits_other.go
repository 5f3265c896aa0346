//go:build !unix

package daemon

// fileLimit returns 0, unknown: this system has no open-file limit that
// echod reads.
func fileLimit() uint64 { return 0 }
