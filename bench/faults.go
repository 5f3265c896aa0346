package bench

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/echod/echod/internal/pattern"
	"github.com/echod/echod/internal/wsclient"
)

// faults counts what went wrong during a run: connection errors by kind, and
// replies that differ from what was sent. Faults are rare, so a mutex is
// cheap enough; the counts the progress line reads are atomic.
type faults struct {
	errors     atomic.Int64
	mismatches atomic.Int64

	mu            sync.Mutex
	byKind        map[string]int64
	firstErr      error
	firstMismatch *Mismatch
}

// connectError marks an error that happened while connecting.
type connectError struct{ err error }

func (e *connectError) Error() string { return fmt.Sprintf("connect: %v", e.err) }
func (e *connectError) Unwrap() error { return e.err }

// add counts a connection error.
func (f *faults) add(err error) {
	f.errors.Add(1)
	kind := errorKind(err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.byKind[kind]++
	if f.firstErr == nil {
		f.firstErr = err
	}
}

// addMismatch counts a reply from worker w's connection that differs from
// what was sent.
func (f *faults) addMismatch(w int, err error) {
	f.mismatches.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.firstMismatch != nil {
		return
	}
	m := &Mismatch{Conn: w, Got: -1, Want: -1, Text: err.Error()}
	var pm *pattern.Mismatch
	if errors.As(err, &pm) {
		m.Offset, m.Got, m.Want = pm.Offset, int(pm.Got), int(pm.Want)
	}
	f.firstMismatch = m
}

// fill copies the counts into res.
func (f *faults) fill(res *Result) {
	f.mu.Lock()
	defer f.mu.Unlock()
	res.Errors = f.errors.Load()
	if len(f.byKind) > 0 {
		res.ErrorsByKind = make(map[string]int64, len(f.byKind))
		for k, v := range f.byKind {
			res.ErrorsByKind[k] = v
		}
	}
	if f.firstErr != nil {
		res.FirstError = f.firstErr.Error()
	}
	res.Mismatches = f.mismatches.Load()
	res.FirstMismatch = f.firstMismatch
}

// errorKind names the kind of a connection error for the report.
func errorKind(err error) string {
	prefix := ""
	var ce *connectError
	if errors.As(err, &ce) {
		prefix = "connect "
	}
	var kind string
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		kind = "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		kind = "reset"
	case errors.Is(err, os.ErrDeadlineExceeded):
		kind = "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		kind = "closed by server"
	case errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EADDRINUSE):
		kind = "out of local ports"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		kind = "out of file descriptors"
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		kind = "unreachable"
	default:
		var te interface{ Timeout() bool }
		var he *handshakeError
		var closed *wsclient.ClosedError
		switch {
		case errors.As(err, &te) && te.Timeout():
			kind = "timeout"
		case errors.As(err, &closed):
			kind = fmt.Sprintf("closed by server (%d)", closed.Code)
		case isTLSError(err):
			kind = "tls handshake"
		case errors.As(err, &he):
			kind = he.stage
		default:
			kind = "other"
		}
	}
	return prefix + kind
}
