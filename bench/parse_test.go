package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseSources(t *testing.T) {
	tests := []struct {
		in   string
		want string // the addresses joined by spaces, or the error's start
	}{
		{"127.0.0.1", "127.0.0.1"},
		{"127.0.0.1,127.0.0.2", "127.0.0.1 127.0.0.2"},
		{" 127.0.0.9 , ::1", "127.0.0.9 ::1"},
		{"127.0.0.254-127.0.1.1", "127.0.0.254 127.0.0.255 127.0.1.0 127.0.1.1"},
		{"127.0.0.5-127.0.0.5,127.0.0.1", "127.0.0.5 127.0.0.1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"", "error: empty address"},
		{"127.0.0.1,", "error: empty address"},
		{"localhost", "error: invalid source address"},
		{"127.0.0.2-127.0.0.1", "error: invalid source range"},
		{"127.0.0.1-::1", "error: invalid source range"},
		{"127.0.0.1-x", "error: invalid source address"},
		{"10.0.0.0-10.1.0.0", "error: source list"},
	}
	for _, tt := range tests {
		addrs, err := ParseSources(tt.in)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			s := make([]string, len(addrs))
			for i, a := range addrs {
				s[i] = a.String()
			}
			got = strings.Join(s, " ")
		}
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("ParseSources(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func FuzzParseSources(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "127.0.0.1-127.0.0.9,::1", "1.2.3.4-1.2.3.3", ",", "::-::ff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addrs, err := ParseSources(s)
		if err != nil {
			return
		}
		if len(addrs) == 0 || len(addrs) > MaxSources {
			t.Fatalf("ParseSources(%q) gave %d addresses", s, len(addrs))
		}
		for _, a := range addrs {
			if !a.IsValid() || a.Is4In6() {
				t.Fatalf("ParseSources(%q) gave %v", s, a)
			}
		}
		if (Config{Addr: "127.0.0.1:7", Sources: addrs}).Validate() != nil {
			t.Fatalf("ParseSources(%q) gave addresses Validate rejects", s)
		}
	})
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want time.Duration
		ok   bool
	}{
		{"plain", "1234 (echod) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 8 0 100 0 0", 2800 * time.Millisecond, true},
		{"name with spaces and parens", "1 (a) b) (c) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1", 100 * time.Millisecond, true},
		{"truncated", "1 (x) S 1 2 3", 0, false},
		{"no name", "1 x S", 0, false},
		{"not a number", "1 (x) S 1 1 1 0 -1 0 0 0 0 0 a 3 0", 0, false},
	}
	for _, tt := range tests {
		got, err := parseStatCPU([]byte(tt.stat))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("%s: parseStatCPU = %v, %v; want %v (ok %v)", tt.name, got, err, tt.want, tt.ok)
		}
	}
	if n, err := parseStatmResident([]byte("5000 1200 300 10 0 900 0\n")); err != nil || n != 1200 {
		t.Errorf("parseStatmResident = %d, %v", n, err)
	}
	if _, err := parseStatmResident([]byte("5000")); err == nil {
		t.Error("parseStatmResident accepted a short line")
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (echod) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0"))
	f.Add([]byte("1 ()) R"))
	f.Fuzz(func(t *testing.T, stat []byte) {
		if d, err := parseStatCPU(stat); err == nil && d < 0 {
			t.Fatalf("negative CPU time %v", d)
		}
	})
}

func TestDurationFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		999:                    "999ns",
		45100:                  "45.1µs",
		12_340_000:             "12.34ms",
		2_500_000_000:          "2.50s",
		time.Duration(1) << 40: "1099.51s",
		time.Duration(1_000):   "1.0µs",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%d) = %q, want %q", d, got, want)
		}
	}
}
