package netsim_test

import (
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want netsim.Path
		err  string
	}{
		{"", netsim.Path{}, ""},
		{"delay=150ms,jitter=30ms,rate=1000000,segment=536", netsim.Path{Delay: 150 * time.Millisecond, Jitter: 30 * time.Millisecond, Rate: 1000000, Segment: 536}, ""},
		{"half-close=close, idle=30s", netsim.Path{CloseOnHalfClose: true, IdleTimeout: 30 * time.Second}, ""},
		{"tamper=flip@600", netsim.Path{Tamper: netsim.Tamper{Kind: netsim.Flip, At: 600}}, ""},
		{"tamper=dup@0", netsim.Path{Tamper: netsim.Tamper{Kind: netsim.Duplicate}}, ""},
		{"delay=150", netsim.Path{}, "delay=150: time: missing unit"},
		{"rate=fast", netsim.Path{}, "rate=fast: invalid syntax"},
		{"rate=-1", netsim.Path{}, "negative Rate"},
		{"speed=1", netsim.Path{}, `unknown setting "speed"`},
		{"delay", netsim.Path{}, "want KEY=VALUE"},
		{"tamper=flip", netsim.Path{}, "want KIND@OFFSET"},
		{"tamper=bend@1", netsim.Path{}, `unknown kind "bend"`},
		{"half-close=maybe", netsim.Path{}, "want close or pass"},
	} {
		got, err := netsim.ParsePath(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePath(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := netsim.ParsePath(got.String()); got != (netsim.Path{}) && (err != nil || back != got) {
			t.Errorf("ParsePath(%q) = %+v, %v: String does not read back", got.String(), back, err)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	f.Add("delay=150ms,jitter=30ms,rate=1000000,segment=536,half-close=close,idle=30s,tamper=flip@600")
	f.Add("tamper=dup@1,,=")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := netsim.ParsePath(s)
		if err != nil {
			return
		}
		if p == (netsim.Path{}) {
			return
		}
		back, err := netsim.ParsePath(p.String())
		if err != nil || back != p {
			t.Fatalf("ParsePath(%q) = %+v, but its String %q reads back as %+v, %v", s, p, p.String(), back, err)
		}
	})
}
