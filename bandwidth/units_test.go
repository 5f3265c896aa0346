package bandwidth

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // a part of the error, if one is wanted
	}{
		{in: "0", want: 0},
		{in: "65536", want: 65536},
		{in: "1B", want: 1},
		{in: "1KB", want: 1000},
		{in: "1kB", want: 1000},
		{in: "1MB", want: 1e6},
		{in: "1.5MB", want: 1.5e6},
		{in: "500GB", want: 500e9},
		{in: "2TB", want: 2e12},
		{in: "1KiB", want: 1024},
		{in: "1MiB", want: 1 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: " 8 MB ", want: 8e6},
		{in: "8Mb", err: "in bits"},
		{in: "8mbps", err: "in bits"},
		{in: "1XB", err: "unknown unit"},
		{in: "MB", err: "not a size"},
		{in: "", err: "not a size"},
		{in: "-1MB", err: "negative"},
		{in: "1.2.3MB", err: "not a size"},
		{in: "9999999TB", err: "too large"},
		{in: "0.1B", err: "less than a byte"},
	} {
		got, err := ParseSize(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseSize(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		err  string
	}{
		{in: "0", want: 0},
		{in: "1MB/s", want: 1e6},
		{in: "1MiB", want: 1 << 20},
		{in: "512KiB/s", want: 512 << 10},
		{in: "1MB/m", err: "not per second"},
		{in: "1MB/", err: "not per second"},
		{in: "10Mbit/s", err: "in bits"},
	} {
		got, err := ParseRate(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseRate(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	if s := Rate(1e6).String(); s != "1MB/s" {
		t.Errorf("Rate(1e6).String() = %q, want 1MB/s", s)
	}
}

func TestParseBudget(t *testing.T) {
	day := 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want Budget
		err  string
	}{
		{in: "off", want: Budget{}},
		{in: "0", want: Budget{}},
		{in: "500GB/30d", want: Budget{500e9, 30 * day}},
		{in: "10GiB/1d", want: Budget{10 << 30, day}},
		{in: "1TB/720h", want: Budget{1e12, 720 * time.Hour}},
		{in: "5MB/1m", want: Budget{5e6, time.Minute}},
		{in: "500GB", err: "no period"},
		{in: "0GB/30d", err: "allows nothing"},
		{in: "500GB/30", err: "want a period"},
		{in: "500GB/1s", err: "out of range"},
		{in: "500GB/400d", err: "out of range"},
		{in: "500GB/-1d", err: "want a period"},
		{in: "500Gb/30d", err: "in bits"},
	} {
		got, err := ParseBudget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBudget(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBudget(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	b := Budget{500e9, 30 * day}
	if s := b.String(); s != "500GB/30d" {
		t.Errorf("String() = %q, want 500GB/30d", s)
	}
	// 500 GB over 30 days is 192,901 bytes a second.
	if r := b.Rate(); r != 192901 {
		t.Errorf("Rate() = %d, want 192901", r)
	}
}

// FuzzParseRate checks that no input panics, and that what parses writes
// back as text that parses to the same rate.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"1MB/s", "1MiB", "0", "8Mb", "1.5GB/s", "-1", "/s", "1e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			return
		}
		if r < 0 {
			t.Fatalf("ParseRate(%q) = %d, negative", s, r)
		}
		back, err := ParseRate(r.String())
		if err != nil || back != r {
			t.Fatalf("ParseRate(%q) = %d, written %q, which parses to %d, %v", s, r, r.String(), back, err)
		}
	})
}

// FuzzParseBudget is FuzzParseRate for budgets.
func FuzzParseBudget(f *testing.F) {
	for _, s := range []string{"500GB/30d", "1TiB/720h", "off", "1/1m", "5MB/1h30m", "1GB/99999999999d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBudget(s)
		if err != nil {
			return
		}
		if b.Bytes < 0 || b.Bytes > 0 && (b.Period < MinPeriod || b.Period > MaxPeriod) {
			t.Fatalf("ParseBudget(%q) = %+v, out of range", s, b)
		}
		back, err := ParseBudget(b.String())
		if err != nil || back != b {
			t.Fatalf("ParseBudget(%q) = %+v, written %q, which parses to %+v, %v", s, b, b.String(), back, err)
		}
	})
}
