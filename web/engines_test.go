package web

import (
	"context"
	"net/http/httptest"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/echod/echod/echo"
)

// served is a Handler served for a test on one engine.
type served struct {
	*httptest.Server
	h    *Handler
	loop *echo.Server // nil on the goroutine engine
}

// serveOn starts h on a loopback listener with its WebSockets on engine;
// on epoll, an echo.Server with h's session limits adopts them. It skips
// the test where the engine does not run. The cleanup closes everything.
func serveOn(t testing.TB, h *Handler, engine string) *served {
	t.Helper()
	s := &served{h: h}
	if engine == echo.EngineEpoll {
		s.loop = &echo.Server{Engine: echo.EngineEpoll, IdleTimeout: h.IdleTimeout,
			MaxSessionDuration: h.MaxSessionDuration, MaxSessionBytes: h.MaxSessionBytes}
		if !s.loop.EventLoops() {
			t.Skip("no event loops on this system")
		}
		h.Adopter = s.loop
	}
	s.Server = httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		if s.loop != nil {
			s.loop.Close()
		}
		s.Server.Close()
	})
	return s
}

// shutdown drains the WebSockets, as echod does: the Handler's and the
// echo server's together.
func (s *served) shutdown(ctx context.Context) error {
	var g errgroup.Group
	g.Go(func() error { return s.h.Shutdown(ctx) })
	if s.loop != nil {
		g.Go(func() error { return s.loop.Shutdown(ctx) })
	}
	return g.Wait()
}

// forEachEngine runs test once per engine, as a subtest: the two ways a
// Handler echoes WebSockets, on a goroutine each with coder/websocket (the
// readable specification), and on an echo.Server's event loops through
// Adopter, with frameEcho.
func forEachEngine(t *testing.T, test func(t *testing.T, engine string)) {
	for _, e := range []string{echo.EngineGoroutine, echo.EngineEpoll} {
		t.Run(e, func(t *testing.T) { test(t, e) })
	}
}
