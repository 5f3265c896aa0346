package admin

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestHealthAndReadiness(t *testing.T) {
	h := NewHandler(func() Snapshot { return Snapshot{} })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	if code, _ := testkit.Get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200", code)
	}
	steps := []struct {
		ready bool
		want  int
	}{{false, 503}, {true, 200}, {false, 503}}
	for _, s := range steps {
		h.SetReady(s.ready)
		if code, body := testkit.Get(t, srv.URL+"/readyz"); code != s.want {
			t.Errorf("ready=%v: /readyz = %d %q, want %d", s.ready, code, body, s.want)
		}
		// Liveness does not follow readiness: a draining server is alive.
		if code, _ := testkit.Get(t, srv.URL+"/healthz"); code != http.StatusOK {
			t.Errorf("ready=%v: /healthz = %d, want 200", s.ready, code)
		}
	}
	resp, err := http.Post(srv.URL+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics = %d, want 405", resp.StatusCode)
	}
}

var (
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(, ?[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (\S+)$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
)

func TestMetricsReportTheSnapshot(t *testing.T) {
	h := NewHandler(func() Snapshot {
		return Snapshot{
			ConnectionsActive: 3,
			ConnectionsTotal:  42,
			TCPBytesIn:        1000, TCPBytesOut: 999,
			UDPDatagramsIn: 7, UDPDatagramsOut: 6,
			UDPBytesIn: 70, UDPBytesOut: 60,
			AcceptErrors: 2,
			Rejected:     map[string]uint64{"max-conns": 5, "proxy-header": 0},
		}
	})
	h.SetReady(true)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	code, body := testkit.Get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		"echod_ready 1",
		"echod_connections_active 3",
		"echod_connections_total 42",
		`echod_bytes_total{proto="tcp",direction="in"} 1000`,
		`echod_bytes_total{proto="tcp",direction="out"} 999`,
		`echod_bytes_total{proto="udp",direction="in"} 70`,
		`echod_bytes_total{proto="udp",direction="out"} 60`,
		`echod_udp_datagrams_total{direction="in"} 7`,
		`echod_udp_datagrams_total{direction="out"} 6`,
		"echod_accept_errors_total 2",
		`echod_rejected_total{reason="max-conns"} 5`,
		`echod_rejected_total{reason="proxy-header"} 0`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
		"process_resident_memory_bytes ",
		"process_open_fds ",
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics has no line %q", want)
		}
	}

	// Every line is a valid sample or comment, and no family is typed twice and no
	// series appears twice, which Prometheus would refuse.
	typed, series := map[string]bool{}, map[string]bool{}
	lines := bufio.NewScanner(strings.NewReader(body))
	for lines.Scan() {
		line := lines.Text()
		switch {
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("bad TYPE line %q", line)
				continue
			}
			if typed[m[1]] {
				t.Errorf("family %s typed twice", m[1])
			}
			typed[m[1]] = true
		case strings.HasPrefix(line, "# HELP "):
		case !sampleLine.MatchString(line):
			t.Errorf("bad sample line %q", line)
		default:
			name := line[:strings.LastIndexByte(line, ' ')]
			if series[name] {
				t.Errorf("series %s appears twice", name)
			}
			series[name] = true
		}
	}
}
