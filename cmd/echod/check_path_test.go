package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/netsim"
)

// The simulated paths, their times scaled down.
var checkPaths = []struct {
	name, simulate string
	closes         bool // turns the half-close into a close
}{
	{"far and slow", "delay=30ms,jitter=6ms,rate=1000000,segment=536", false},
	{"half-close turned into close", "half-close=close", true},
	{"idle connections closed", "idle=300ms", false},
}

// namesPath is what every line a path fails must say.
var namesPath = regexp.MustCompile(`something between \(a (proxy or tunnel|NAT, load balancer or tunnel)\).*run (the same|echod) check on the server's own machine.*, or (run )?echod path \S+`)

// echod check against echod serve, through each simulated path: every
// check passes, or its line says the path may be the cause; -protohackers
// gives the same verdict twice, a fail exactly where the real checker
// would fail too.
func TestCheckThroughSimulatedPaths(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	for _, p := range checkPaths {
		t.Run(p.name, func(t *testing.T) {
			// large's 32 MiB through 1 MB/s takes half a minute: check's
			// tests stretch a deadline on a slow path.
			code, out, errOut := runCmd(t, nil, "check", addr, "-simulate", p.simulate, "-run", "^[^l]")
			t.Logf("exit %d\n%s%s", code, errOut, out)
			if !strings.HasPrefix(errOut, "simulating "+p.simulate+": an in-process proxy at 127.0.0.1:") {
				t.Errorf("stderr %q, want it to say what it simulates", errOut)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.HasPrefix(line, "FAIL ") && !namesPath.MatchString(line) {
					t.Errorf("does not name the path: %s", line)
				}
			}
			if (code != 0) != p.closes {
				t.Errorf("exit %d through %s", code, p.simulate)
			}
			for run := range 2 {
				code, out, _ := runCmd(t, nil, "check", "-protohackers", addr, "-simulate", p.simulate)
				if (code != 0) != p.closes {
					t.Errorf("-protohackers run %d: exit %d through %s\n%s", run+1, code, p.simulate, out)
				}
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, "FAIL:") && !strings.HasPrefix(line, "FAIL: ") && !namesPath.MatchString(line) {
						t.Errorf("-protohackers run %d does not name the path: %s", run+1, line)
					}
				}
			}
		})
	}
}

// echod send through each simulated path: the echo, or an error that names
// the path.
func TestSendThroughSimulatedPaths(t *testing.T) {
	addr := startServe(t, 1, "-listen", "127.0.0.1:0")[0]
	for _, p := range checkPaths {
		t.Run(p.name, func(t *testing.T) {
			path, err := netsim.ParsePath(p.simulate)
			if err != nil {
				t.Fatal(err)
			}
			proxy, err := netsim.Start(context.Background(), addr, path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { proxy.Close() })
			for _, args := range [][]string{{"send", proxy.Addr(), "hello, path"}, {"send", "-verify", proxy.Addr()}} {
				start := time.Now()
				code, out, errOut := runCmd(t, strings.NewReader(strings.Repeat("0123456789abcdef", 4096)), args...)
				t.Logf("%s: exit %d in %v, stderr %q", strings.Join(args, " "), code, time.Since(start), errOut)
				// Through a path that closes at the half-close, the echo of
				// a short message may win the race with the close.
				switch {
				case code == 0 && len(out) != len(args[len(args)-1]) && args[1] != "-verify":
					t.Errorf("%s: exit 0 with %d bytes back", strings.Join(args, " "), len(out))
				case code != 0 && !namesPath.MatchString(errOut):
					t.Errorf("%s: exit %d, stderr %q does not name the path", strings.Join(args, " "), code, errOut)
				}
			}
		})
	}
}
