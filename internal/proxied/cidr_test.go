package proxied

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseCIDRs(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the prefixes joined by spaces
		wantErr string
	}{
		{in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{in: " 10.0.0.0/8 ,192.168.1.7, fd00::/8", want: "10.0.0.0/8 192.168.1.7/32 fd00::/8"},
		{in: "::1", want: "::1/128"},
		{in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{in: "", wantErr: "empty network"},
		{in: "10.0.0.0/8,", wantErr: "empty network"},
		{in: "10.0.0.0/33", wantErr: `invalid network "10.0.0.0/33"`},
		{in: "example.com", wantErr: `invalid network "example.com"`},
		{in: "fe80::1%eth0", wantErr: "zones"},
		{in: "::ffff:10.0.0.0/64", wantErr: "at least /96"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCIDRs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCIDRs(%q) = %v, %v; want error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || join(got) != tt.want {
				t.Fatalf("ParseCIDRs(%q) = %q, %v; want %q", tt.in, join(got), err, tt.want)
			}
		})
	}
}

func join(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, " ")
}

// Whatever the flag's value: no panic, one line of error or valid prefixes
// that read back as themselves.
func FuzzParseCIDRs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.0.0.0/8, ::1", "::ffff:1.2.3.4", "fe80::1%eth0", ",", "1.2.3.4/33", "::ffff:0.0.0.0/96"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParseCIDRs(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error has several lines: %q", err)
			}
			return
		}
		if len(ps) == 0 {
			t.Fatalf("ParseCIDRs(%q) returned no prefixes and no error", s)
		}
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("ParseCIDRs(%q) returned %v", s, p)
			}
		}
		var commas []string
		for _, p := range ps {
			commas = append(commas, p.String())
		}
		again, err := ParseCIDRs(strings.Join(commas, ","))
		if err != nil || join(again) != join(ps) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}
