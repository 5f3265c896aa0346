//go:build !linux

package bench

// ownsPort cannot tell who owns a port without Linux's /proc.
func ownsPort(pid, port int, udp bool) (owns, known bool) { return false, false }
