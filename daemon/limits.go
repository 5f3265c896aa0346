package daemon

// DefaultMaxConns is echod's default for echo.Server.MaxConns, derived from
// the process's limit on open files: see defaultMaxConns. Zero (no limit)
// where that limit is unknown, such as on Windows.
func DefaultMaxConns() int { return defaultMaxConns(fileLimit()) }

// defaultMaxConns derives -max-conns from the open-file limit: it keeps a
// tenth of the limit (at least 64 descriptors) in reserve for listeners, UDP
// sockets, logs and the connections accepted only to be refused, so that a
// server at its connection limit never meets EMFILE. It leaves room for a
// 10,000-connection benchmark wherever the limit allows that and 64 more.
// Zero (no limit) when the limit is unknown.
func defaultMaxConns(nofile uint64) int {
	const reserve, benchmark, most = 64, 10000, 1 << 20
	switch {
	case nofile == 0:
		return 0
	case nofile < 2*reserve:
		return int(nofile / 2)
	}
	n := nofile - max(nofile/10, reserve)
	if n < benchmark && nofile >= benchmark+reserve {
		n = benchmark
	}
	return int(min(n, most))
}
