// Package check is a conformance suite for any echo server (RFC 862): it
// talks to the server over the network, judges it by the bytes that come
// back, and says in plain words what is wrong. The suite is data, a list of
// named checks each with its own deadline, so a hung server fails one check
// instead of hanging the run.
package check

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/target"
)

// DefaultPatience is how long a check waits by default for something a
// correct server does at once, such as the echo of a short message or the
// close that follows a half-close.
const DefaultPatience = 5 * time.Second

// Config says which server to check and how.
type Config struct {
	// Addr is the TCP echo server's HOST:PORT. Empty skips the TCP checks.
	Addr string
	// UDPAddr is the UDP echo server's HOST:PORT. Empty skips the UDP checks.
	UDPAddr string
	// URL is a WebSocket echo server's ws:// or wss:// URL. Empty skips
	// the WebSocket checks.
	URL string
	// TLS, if not nil, runs the TCP checks over TLS with this client
	// configuration. It is also the client configuration for a wss:// URL,
	// where nil trusts the system's roots.
	TLS *tls.Config
	// Protohackers runs the Protohackers Smoke Test sequence instead of the
	// full TCP suite.
	Protohackers bool
	// Run, if not nil, selects the checks whose names it matches.
	Run *regexp.Regexp
	// Patience is how long to wait for something a correct server does at
	// once (an echo, the close after a half-close). Zero means
	// DefaultPatience.
	Patience time.Duration
	// Started, if not nil, is called as each check starts.
	Started func(c Check)
	// Finished, if not nil, is called with each result as soon as it is
	// known, so a slow run shows its progress.
	Finished func(r Result)
}

// Check is one named conformance check.
type Check struct {
	// Name identifies the check in reports and for Config.Run.
	Name string
	// Doc says in one line what the check proves.
	Doc string
	// Deadline bounds the whole check: a server that hangs fails it
	// instead of hanging the run. A check whose echo is still arriving
	// steadily when it passes goes on, up to 5 times it: a slow path is
	// not a wrong server.
	Deadline time.Duration
	// Skip, if not nil, returns why the check does not apply to t, or "".
	Skip func(t *Target) string
	// Func runs the check. It returns a short detail on success, or an
	// error whose text is the reason for the failure.
	Func func(ctx context.Context, t *Target) (detail string, err error)
}

// Target is the server under test, as the checks see it.
type Target struct {
	// Addr is the TCP echo server's HOST:PORT.
	Addr string
	// UDPAddr is the UDP echo server's HOST:PORT.
	UDPAddr string
	// URL is the WebSocket echo server's ws:// or wss:// URL.
	URL string
	// TLS, if not nil, is the client configuration for TLS echo on Addr,
	// and for a wss:// URL.
	TLS *tls.Config
	// Patience is how long to wait for something a correct server does at
	// once.
	Patience time.Duration

	openEcho *openEcho    // what came back of a short message on an open connection, once known
	received atomic.Int64 // bytes read on the TCP connections of dial
}

// Status is the outcome of one check.
type Status string

// The outcomes of a check.
const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip" // the check does not apply to this server
	// Note is a check that found something worth saying that is no fault
	// of an echo server, such as IPv6 not served where IPv4 is.
	Note Status = "note"
)

// Result is what one check found.
type Result struct {
	Name   string
	Status Status
	Detail string // on Pass: what was proven, such as sizes and timings
	Reason string // on Fail: what went wrong; on Skip: why it did not apply; on Note: the note
	// Dump, on Fail, shows the bytes around the first difference between
	// the reply and what was sent, in rows like hexdump -C's; often empty.
	Dump     string
	Duration time.Duration
}

// Report is the outcome of a run.
type Report struct {
	Addr, UDPAddr string
	TLS           bool   // the TCP checks ran over TLS
	URL           string // of a WebSocket echo server
	Results       []Result
	Duration      time.Duration
}

// Failed returns how many checks failed.
func (r Report) Failed() int { return r.count(Fail) }

// Passed returns how many checks passed.
func (r Report) Passed() int { return r.count(Pass) }

// OK reports whether every check that ran passed, and at least one ran.
func (r Report) OK() bool { return r.Failed() == 0 && r.Passed() > 0 }

// UnreachableError is returned by Run when the server cannot be reached at
// all, so that no check could say anything useful.
type UnreachableError struct {
	Addr string
	Err  error
	// UDPAnswers is set when TCP was refused but a UDP echo server
	// answered at Addr: the person meant udp://.
	UDPAnswers bool
}

func (e *UnreachableError) Error() string {
	switch {
	case errors.Is(e.Err, syscall.ECONNREFUSED) && e.UDPAnswers:
		return "nothing is listening on " + e.Addr + " over TCP, but UDP echo answers there: use udp://" + e.Addr
	case errors.Is(e.Err, syscall.ECONNREFUSED):
		return "nothing is listening on " + e.Addr
	}
	return fmt.Sprintf("cannot connect to %s: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Checks returns the checks Run would select for cfg, in the order it runs
// them.
func Checks(cfg Config) []Check {
	var all []Check
	if cfg.Addr != "" {
		if cfg.Protohackers {
			all = append(all, ProtohackersChecks()...)
		} else {
			all = append(all, TCPChecks()...)
		}
	}
	if cfg.UDPAddr != "" {
		all = append(all, UDPChecks()...)
	}
	if cfg.URL != "" {
		all = append(all, WebSocketChecks()...)
	}
	var picked []Check
	for _, c := range all {
		if cfg.Run == nil || cfg.Run.MatchString(c.Name) {
			picked = append(picked, c)
		}
	}
	return picked
}

// Run runs the checks cfg selects, one after another, and reports what each
// found. It returns an *UnreachableError, and no results, when nothing
// accepts TCP connections on cfg.Addr. When ctx's deadline passes, the
// running check fails and the rest are reported as not run; when ctx is
// cancelled, Run returns at once with the results of the checks that
// finished, and ctx's error.
func Run(ctx context.Context, cfg Config) (Report, error) {
	start := time.Now()
	t := &Target{Addr: cfg.Addr, UDPAddr: cfg.UDPAddr, URL: cfg.URL, TLS: cfg.TLS, Patience: cfg.Patience}
	if t.Patience <= 0 {
		t.Patience = DefaultPatience
	}
	rep := Report{Addr: cfg.Addr, UDPAddr: cfg.UDPAddr, TLS: cfg.TLS != nil && cfg.Addr != "", URL: cfg.URL}
	checks := Checks(cfg)
	if cfg.Addr != "" && usesTCP(checks) {
		if err := t.probe(ctx); err != nil {
			return rep, err
		}
	}
	if cfg.URL != "" && slices.ContainsFunc(checks, isWebSocket) {
		if err := t.probeWebSocket(ctx); err != nil {
			return rep, err
		}
	}
	var decisive string // why the TCP checks left would fail too
	for _, c := range checks {
		var res Result
		switch {
		case errors.Is(ctx.Err(), context.Canceled):
			rep.Duration = time.Since(start)
			return rep, ctx.Err()
		case ctxEnded(ctx):
			res = Result{Name: c.Name, Status: Fail, Reason: "not run: the run was stopped or ran out of time"}
		case decisive != "" && !isUDP(c):
			res = Result{Name: c.Name, Status: Skip, Reason: "not run: " + decisive}
		default:
			if cfg.Started != nil {
				cfg.Started(c)
			}
			var err error
			res, err = runOne(ctx, c, t)
			var de *decisiveError
			if res.Status == Fail && errors.As(err, &de) && !isUDP(c) {
				decisive = de.msg
			}
			if errors.Is(ctx.Err(), context.Canceled) {
				rep.Duration = time.Since(start)
				return rep, ctx.Err()
			}
		}
		rep.Results = append(rep.Results, res)
		if cfg.Finished != nil {
			cfg.Finished(res)
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

func usesTCP(checks []Check) bool {
	for _, c := range checks {
		if !isUDP(c) && !isWebSocket(c) {
			return true
		}
	}
	return false
}

// probe makes one connection to the target (with a TLS handshake for TLS),
// so that a wrong address is one clear error rather than every check
// failing the same way.
func (t *Target) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.Patience)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", t.Addr)
	if isReset(err) {
		// Something accepted and then reset the connection, as a server
		// at a connection limit does: the checks will say more.
		return nil
	}
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			err = dnsErr
		} else {
			err = bareNetError(err)
		}
		refused := errors.Is(err, syscall.ECONNREFUSED)
		return &UnreachableError{Addr: t.Addr, Err: err, UDPAnswers: refused && target.AnswersUDP(ctx, t.Addr)}
	}
	defer c.Close()
	if t.TLS == nil {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := handshake(ctx, c, t.TLS, t.Addr); err != nil {
		return fmt.Errorf("tls://%s: %w", t.Addr, err)
	}
	return nil
}

// runOne runs c and returns its result, and the error it failed with.
func runOne(ctx context.Context, c Check, t *Target) (Result, error) {
	start := time.Now()
	res := Result{Name: c.Name}
	if c.Skip != nil {
		if why := c.Skip(t); why != "" {
			res.Status, res.Reason = Skip, why
			return res, nil
		}
	}
	// The check's own deadline is watched, not set: a check whose echo is
	// still arriving steadily when it passes goes on, up to a cap.
	cctx, cancelCap := context.WithTimeout(ctx, extendBy*c.Deadline)
	defer cancelCap()
	cctx, cancel := context.WithCancelCause(cctx)
	var wg sync.WaitGroup
	w := &watch{deadline: c.Deadline}
	w.start(cctx, &wg, &t.received, cancel)
	defer func() {
		cancel(nil)
		wg.Wait()
	}()
	detail, err := c.Func(cctx, t)
	if errors.Is(err, errClosedEmpty) && t.TLS == nil && !ctxEnded(cctx) {
		pctx, cancel := context.WithTimeout(cctx, t.Patience)
		if target.SpeaksTLS(pctx, t.Addr) {
			err = errTLS(t.Addr)
		}
		cancel()
	}
	if err != nil && !ctxEnded(cctx) {
		err = t.explainPath(cctx, err)
	}
	res.Duration = time.Since(start)
	var note *noteError
	var m *pattern.Mismatch
	switch {
	case err == nil:
		res.Status, res.Detail = Pass, detail+w.slowNote(t.Addr, true)
	case errors.As(err, &note):
		res.Status, res.Reason = Note, note.msg
	case ctxEnded(ctx):
		res.Status, res.Reason = Fail, fmt.Sprintf("stopped: the run was stopped or ran out of time (%v)", err)
	case ctxEnded(cctx) && w.slowNote(t.Addr, false) != "":
		res.Status, res.Reason = Fail, fmt.Sprintf("not finished within %v (%v): %s", time.Since(start).Round(time.Second), err, w.slowNote(t.Addr, false))
	case ctxEnded(cctx):
		// Not cctx.Err: a connection whose deadline is cctx's can time
		// out before cctx's timer has marked it done.
		res.Status, res.Reason = Fail, fmt.Sprintf("not finished within the check's deadline of %v: %v", c.Deadline, err)
	default:
		res.Status, res.Reason = Fail, err.Error()
	}
	if res.Status == Fail && errors.As(err, &m) {
		res.Dump = m.Dump()
	}
	return res, err
}

// ctxEnded reports whether ctx is done or past its deadline; the deadline
// check closes the gap between a timer firing and ctx.Err reporting it.
func ctxEnded(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}
