package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/echo"
	"github.com/echod/echod/internal/testkit"
)

// start runs cfg until the test ends and returns the readiness lines'
// addresses by protocol, once there are want of them, and the log.
func start(t *testing.T, cfg Config, want int) (map[string][]string, *testkit.Buffer, context.CancelFunc, func() error) {
	t.Helper()
	log := new(testkit.Buffer)
	cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	stopped := make(chan struct{})
	go func() {
		err = Run(ctx, cfg)
		close(stopped)
	}()
	wait := func() error {
		<-stopped
		return err
	}
	t.Cleanup(func() {
		cancel()
		wait()
	})
	var addrs map[string][]string
	if !testkit.Eventually(10*time.Second, func() bool {
		var n int
		addrs, n = testkit.Listening(log.String())
		return n == want
	}) {
		t.Fatalf("Run did not report %d listeners:\n%s", want, log)
	}
	return addrs, log, cancel, wait
}

// session opens a TCP session to addr, proven accepted by one echo, until
// the test ends.
func session(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c := testkit.Dial(t, addr)
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c
}

// Run serves what Config names, one readiness line per socket; cancelling
// its context drains: an open session finishes its echo, Run returns nil.
func TestRunServesAndDrains(t *testing.T) {
	addrs, log, cancel, wait := start(t, Config{
		Listen:          []string{"127.0.0.1:0"},
		UDP:             true,
		ShutdownTimeout: 10 * time.Second,
	}, 2)
	if len(addrs["tcp"]) != 1 || len(addrs["udp"]) != 1 || addrs["tcp"][0] != addrs["udp"][0] {
		t.Fatalf("listening on %v, want TCP and UDP on one address", addrs)
	}
	c := session(t, addrs["tcp"][0])
	cancel()
	if !testkit.Eventually(10*time.Second, func() bool { return strings.Contains(log.String(), "shutting down") }) {
		t.Fatalf("no drain in the log:\n%s", log)
	}
	c.Write([]byte("during the drain"))
	c.CloseWrite()
	if got, err := io.ReadAll(c); err != nil || string(got) != "during the drain" {
		t.Fatalf("during the drain: %q, %v", got, err)
	}
	if err := wait(); err != nil {
		t.Fatalf("Run returned %v after the drain, want nil", err)
	}
}

// The drain ends at ShutdownTimeout: a session still open then is closed,
// and Run returns.
func TestRunClosesWhatOutlastsTheShutdownTimeout(t *testing.T) {
	addrs, log, cancel, wait := start(t, Config{
		Listen:          []string{"127.0.0.1:0"},
		Server:          &echo.Server{Engine: echo.EngineGoroutine},
		ShutdownTimeout: 100 * time.Millisecond,
	}, 1)
	c := session(t, addrs["tcp"][0])
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the session outlived Run")
	}
	if !strings.Contains(log.String(), "shutdown timeout reached") {
		t.Errorf("no warning that sessions were closed:\n%s", log)
	}
}

// A start that fails leaves nothing open: the sockets opened before the bad
// one are closed again.
func TestRunFailsWhole(t *testing.T) {
	busy := testkit.Listen(t)
	freeAddr := testkit.FreeAddr(t, "tcp")
	err := Run(context.Background(), Config{Listen: []string{freeAddr, busy.Addr().String()}})
	if err == nil || !strings.Contains(err.Error(), "pick another -listen port") {
		t.Fatalf("Run = %v, want the port-in-use error with its hint", err)
	}
	l, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("the first address is still held after the failed start: %v", err)
	}
	l.Close()
}

// A mistake in the Config is a *ConfigError, which echod serve turns into a
// usage error.
func TestRunConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{TLSListen: []string{"127.0.0.1:0"}},
		{Listen: []string{"127.0.0.1:0"}, TLSCert: "cert.pem", TLSKey: "key.pem"},
	} {
		var ce *ConfigError
		if err := Run(context.Background(), cfg); !errors.As(err, &ce) {
			t.Errorf("Run(%+v) = %v, want a *ConfigError", cfg, err)
		}
	}
}

// A zero Config serves with echod serve's default limits; a Server given
// is used as it is, its zero fields meaning no limit.
func TestZeroConfigHasTheFlagsDefaults(t *testing.T) {
	var c Config
	c.setDefaults()
	s := c.Server
	if s.MaxConns != DefaultMaxConns() || s.IdleTimeout != DefaultIdleTimeout ||
		s.UDPSourceRate != DefaultUDPSourceRate || s.UDPGlobalRate != DefaultUDPGlobalRate {
		t.Errorf("a zero Config's server has max-conns %d, idle %v, UDP rates %d and %d; want the flags' defaults",
			s.MaxConns, s.IdleTimeout, s.UDPSourceRate, s.UDPGlobalRate)
	}
	if c.ShutdownTimeout != DefaultShutdownTimeout || c.Web.IdleTimeout != DefaultIdleTimeout {
		t.Errorf("a zero Config drains for %v and closes idle WebSockets after %v; want %v and %v",
			c.ShutdownTimeout, c.Web.IdleTimeout, DefaultShutdownTimeout, DefaultIdleTimeout)
	}
	given := &echo.Server{}
	c = Config{Server: given, ShutdownTimeout: -1}
	c.setDefaults()
	if c.Server != given || given.IdleTimeout != 0 || given.MaxConns != 0 || c.ShutdownTimeout != -1 {
		t.Errorf("setDefaults changed what was given: %+v, shutdown %v", given, c.ShutdownTimeout)
	}
}
