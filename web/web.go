// Package web is echod's echo for the web: WebSocket echo on any path that
// asks to upgrade, a JSON (or text) description of every other HTTP request,
// and a page at / for trying both in a browser. It is an http.Handler served
// by net/http, beside package echo rather than inside it, with the same
// promises: exact bytes, bounded memory per connection, and a drain.
package web

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/echod/echod/internal/drain"
)

// Defaults for the Handler's zero-valued fields.
const (
	DefaultMaxMessage = 1 << 20
	DefaultMaxBody    = 1 << 20
	DefaultMaxDelay   = 10 * time.Second
	DefaultBodyMemory = 256 << 20
	// DefaultMaxRequestsPerAddr is the most requests in flight from one
	// address when MaxRequestsPerAddr is zero.
	DefaultMaxRequestsPerAddr = 256
)

// MostBody is the largest MaxBody: the body is held in memory.
const MostBody = 1 << 30

// ReasonMaxMessage is the reason, in echod's vocabulary of limits, for a
// WebSocket closed with 1009 for a message above MaxMessage.
const ReasonMaxMessage = "ws-max-message"

// Handler serves WebSocket echo, HTTP request echo and the page. The zero
// value is ready to use; the exported fields configure it and must not
// change once it serves. Drain it with its own Shutdown beside the
// http.Server's: net/http does not track the connections a WebSocket takes
// over.
type Handler struct {
	// MaxMessage is the largest WebSocket message echoed, in bytes; a
	// longer one closes the connection with status 1009 (message too big).
	// Zero means DefaultMaxMessage.
	MaxMessage int64
	// MaxBody is how much of an HTTP request's body the echo includes;
	// the rest is not read, and the echo says it was cut. Zero means
	// DefaultMaxBody; more than MostBody means MostBody.
	MaxBody int64
	// MaxDelay is the longest ?delay= a request may ask for. Zero means
	// DefaultMaxDelay.
	MaxDelay time.Duration
	// BodyMemory bounds the memory the request echoes hold at once, over
	// all requests: their bodies as they arrive, and their headers until
	// the echo is written. One client address (IPv6: its /64) may hold
	// half of it, one connection a sixteenth (never less than one body
	// of MaxBody). When a body does not fit, uploads that have sent
	// nothing for a second give their memory back (answered 408 Request
	// Timeout); if there is still no room, the body is cut where it
	// stopped fitting, and its echo says so (CutMemory). A request
	// without a body never waits behind bodies. Zero means
	// DefaultBodyMemory; it is never less than one request of MaxBody
	// needs.
	BodyMemory int64
	// MaxRequestsPerAddr bounds the requests in flight at once from one
	// client address (IPv6: its /64), HTTP/2 streams included; more are
	// answered 429 Too Many Requests. Zero means
	// DefaultMaxRequestsPerAddr; negative, no limit.
	MaxRequestsPerAddr int
	// IdleTimeout closes, with status 1001, a WebSocket connection that
	// moves no message byte either way for this long. Zero means never.
	// (net/http's own timeouts stop at the upgrade.)
	IdleTimeout time.Duration
	// MaxSessionDuration closes a WebSocket connection, with status 1008
	// (policy violation), this long after its upgrade, once the message
	// being echoed, if any, is written back. Zero means no limit.
	MaxSessionDuration time.Duration
	// MaxSessionBytes closes a WebSocket connection, with status 1008,
	// once the client has sent this many bytes of messages, all echoed:
	// messages are echoed whole, so the last may take it past by up to
	// MaxMessage. Zero means no limit.
	MaxSessionBytes int64
	// Adopter, when not nil, serves WebSocket connections over plain
	// HTTP/1.1 from their upgrade on, with a frame echo as its
	// echo.Processor: an echo.Server with the epoll engine serves them on
	// its event loops, holding no goroutine while they are idle. Its
	// limits (IdleTimeout, MaxSessionDuration, MaxSessionBytes, counted
	// in bytes on the wire) and its Shutdown apply to them instead of the
	// Handler's (a drain's or a session limit's close waits for the
	// message in flight, as here); MaxMessage and UTF-8 stay the
	// Handler's. Nil, and always over TLS and HTTP/2, each WebSocket is
	// echoed on a goroutine of its own.
	Adopter Adopter
	// Hostname is the server name the echo reports. Empty means the
	// name the operating system gives (os.Hostname).
	Hostname string
	// Logger receives a line per WebSocket connection at debug level.
	// Nil discards.
	Logger *slog.Logger

	hostOnce sync.Once
	hostname string

	budgetOnce sync.Once
	mem        *budget

	bufs sync.Pool // *[bufferSize]byte, only while a message is in flight

	mu       sync.Mutex
	sessions map[*session]struct{}
	closing  bool
	done     chan struct{} // closed when Shutdown starts; ends ?delay= waits
	wg       sync.WaitGroup

	stats counters
}

// Stats are the Handler's counters since it started.
type Stats struct {
	// WebSockets is the number of WebSocket connections open now;
	// WebSocketsTotal counts those ever upgraded.
	WebSockets      int
	WebSocketsTotal uint64
	// Messages counts the WebSocket messages echoed in full; MessageBytes
	// their bytes, one way.
	Messages, MessageBytes uint64
	// TooBig counts the connections closed with 1009 for a message above
	// MaxMessage (ReasonMaxMessage).
	TooBig uint64
	// Requests counts the HTTP requests echoed (not upgrades, not the
	// page).
	Requests uint64
	// SessionDuration and SessionBytes count the WebSockets closed by
	// MaxSessionDuration and MaxSessionBytes (those the Adopter serves,
	// its Stats count under its own limits).
	SessionDuration, SessionBytes uint64
}

type counters struct {
	open, total, messages, messageBytes, tooBig, requests atomic.Uint64
	sessionDuration, sessionBytes                         atomic.Uint64
}

// Stats returns the Handler's counters.
func (h *Handler) Stats() Stats {
	return Stats{
		WebSockets:      int(h.stats.open.Load()),
		WebSocketsTotal: h.stats.total.Load(),
		Messages:        h.stats.messages.Load(),
		MessageBytes:    h.stats.messageBytes.Load(),
		TooBig:          h.stats.tooBig.Load(),
		Requests:        h.stats.requests.Load(),
		SessionDuration: h.stats.sessionDuration.Load(),
		SessionBytes:    h.stats.sessionBytes.Load(),
	}
}

// ServeHTTP routes a request: a WebSocket upgrade to the echo, a browser's
// request for / to the page, anything else to the request echo.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Nothing echod serves may be sniffed into something else, such as a
	// body echoed back read as HTML.
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch {
	case isUpgrade(r):
		h.serveWebSocket(w, r)
	case r.URL.Path == InfoPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		h.serveInfo(w, r)
	case r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && accepts(r, "text/html"):
		servePage(w, r)
	case r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != "":
		servePreflight(w, r)
	default:
		h.serveRequest(w, r)
	}
}

// isUpgrade reports whether r asks for a WebSocket, the way RFC 6455
// section 4.2.1 spells it: Upgrade names websocket.
func isUpgrade(r *http.Request) bool {
	return hasToken(r.Header, "Upgrade", "websocket")
}

// Shutdown drains the WebSocket connections: each is sent a close frame
// (1001, "server shutting down") as soon as the message it is echoing, if
// any, is written back, and Shutdown waits for their close handshakes.
// New upgrades are refused with 503 and ?delay= waits end at once. When ctx
// ends first, the connections left are closed without a handshake and
// Shutdown returns ctx's error. Call it after http.Server.Shutdown, which
// stops new connections but does not know the upgraded ones.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.startClosing(websocketGoingAway, "server shutting down")
	return drain.Wait(ctx, &h.wg, h.closeNow)
}

// Close closes every WebSocket connection at once, without a close
// handshake, and waits for their goroutines. Call it after
// http.Server.Close.
func (h *Handler) Close() error {
	h.startClosing(0, "")
	h.closeNow()
	h.wg.Wait()
	return nil
}

// startClosing refuses new upgrades and, with a code, asks every session
// for a close handshake.
func (h *Handler) startClosing(code websocket.StatusCode, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closing {
		h.closing = true
		close(h.doneLocked())
	}
	if code == 0 {
		return
	}
	for s := range h.sessions {
		s.end(code, reason, false)
	}
}

func (h *Handler) closeNow() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sessions {
		s.abort()
	}
}

// doneLocked returns h.done, making it on first use; h.mu is held.
func (h *Handler) doneLocked() chan struct{} {
	if h.done == nil {
		h.done = make(chan struct{})
	}
	return h.done
}

// shuttingDown returns a channel closed once Shutdown or Close starts.
func (h *Handler) shuttingDown() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.doneLocked()
}

// track registers s, or reports false once the Handler is closing.
func (h *Handler) track(s *session) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	if h.sessions == nil {
		h.sessions = make(map[*session]struct{})
	}
	h.sessions[s] = struct{}{}
	h.wg.Add(1)
	h.stats.open.Add(1)
	h.stats.total.Add(1)
	return true
}

func (h *Handler) untrack(s *session) {
	h.mu.Lock()
	delete(h.sessions, s)
	h.mu.Unlock()
	h.stats.open.Add(^uint64(0))
	h.wg.Done()
}

func (h *Handler) isClosing() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closing
}

func (h *Handler) maxMessage() int64 {
	if h.MaxMessage > 0 {
		// One byte past the limit is read to tell: keep room for it.
		return min(h.MaxMessage, math.MaxInt64-1)
	}
	return DefaultMaxMessage
}

func (h *Handler) maxBody() int64 {
	if h.MaxBody > 0 {
		return min(h.MaxBody, MostBody)
	}
	return DefaultMaxBody
}

// budget returns the request echoes' memory budget, made on first use.
func (h *Handler) budget() *budget {
	h.budgetOnce.Do(func() {
		total := h.BodyMemory
		if total <= 0 {
			total = DefaultBodyMemory
		}
		// A body of MaxBody, one byte more to tell it was longer, and
		// its headers fit in a connection's share.
		one := h.maxBody() + 1 + webHeaderMemory
		perConn := max(total/16, one)
		perAddr := max(total/2, perConn)
		total = max(total, perAddr)
		h.mem = &budget{
			total:       total,
			perAddr:     perAddr,
			perConn:     perConn,
			headroom:    min(total/8, total-one),
			maxRequests: h.maxRequests(),
			stallGrace:  stallGrace,
		}
	})
	return h.mem
}

// stallGrace is how long an upload may send nothing before it gives its
// memory back to a body that has no room.
const stallGrace = time.Second

// webHeaderMemory is room for one request's headers: net/http reads at
// most 1 MiB of them, and echod's own server 64 KiB.
const webHeaderMemory = 1 << 20

func (h *Handler) maxRequests() int {
	switch {
	case h.MaxRequestsPerAddr < 0:
		return 0
	case h.MaxRequestsPerAddr == 0:
		return DefaultMaxRequestsPerAddr
	}
	return h.MaxRequestsPerAddr
}

func (h *Handler) maxDelay() time.Duration {
	if h.MaxDelay > 0 {
		return h.MaxDelay
	}
	return DefaultMaxDelay
}

func (h *Handler) serverName() string {
	h.hostOnce.Do(func() {
		h.hostname = h.Hostname
		if h.hostname == "" {
			h.hostname, _ = os.Hostname()
		}
	})
	return h.hostname
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.New(slog.DiscardHandler)
}
