package daemon

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestDefaultMaxConns(t *testing.T) {
	tests := []struct {
		nofile uint64
		want   int
	}{
		{0, 0},             // unknown: no limit
		{40, 20},           // tiny: half in reserve
		{500, 436},         // 64 in reserve
		{1024, 922},        // a tenth in reserve
		{10000, 9000},      // a tenth in reserve; no room for 10,000 and 64 more
		{10064, 10000},     // room for a 10,000-connection benchmark
		{10500, 10000},     // ...which wins over a tenth in reserve
		{20000, 18000},     // a tenth in reserve
		{1048576, 943719},  // a common hard limit
		{1 << 40, 1 << 20}, // effectively unlimited: capped
	}
	for _, tt := range tests {
		if got := defaultMaxConns(tt.nofile); got != tt.want {
			t.Errorf("defaultMaxConns(%d) = %d, want %d", tt.nofile, got, tt.want)
		}
	}
}
