// Package backoff is the pause between retries of a failing accept, shared
// by every accept loop of the echo server: like net/http's, it starts at
// 5 ms and doubles up to 1 s, so a server out of file descriptors neither
// spins nor stays deaf for long once they are back.
package backoff

import "time"

// Next returns the pause after one more failure, given the previous pause
// (zero after a success).
func Next(prev time.Duration) time.Duration {
	return min(max(2*prev, 5*time.Millisecond), time.Second)
}
