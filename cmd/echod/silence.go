package main

import (
	"io"
	"sync"
	"time"
)

// silence is send's -timeout on a stream: it fires when neither input nor
// reply has come for the timeout. Time spent waiting for a person to type
// at a terminal does not count: they are not silent, they are thinking.
type silence struct {
	timeout time.Duration
	typing  bool

	mu      sync.Mutex
	timer   *time.Timer
	waiting bool // blocked reading a person's input
	fired   bool
}

// newSilence starts the clock; fire runs once when it runs out.
func newSilence(timeout time.Duration, typing bool, fire func()) *silence {
	s := &silence{timeout: timeout, typing: typing}
	s.timer = time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.fired = !s.waiting
		s.mu.Unlock()
		if s.fired {
			fire()
		}
	})
	return s
}

// heard restarts the clock: something came in or back.
func (s *silence) heard() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if !s.fired && !s.waiting {
		s.timer.Reset(s.timeout)
	}
	s.mu.Unlock()
}

// wait stops the clock while a person types, or restarts it after.
func (s *silence) wait(waiting bool) {
	s.mu.Lock()
	s.waiting = waiting
	s.mu.Unlock()
	if waiting {
		s.timer.Stop()
	} else {
		s.heard()
	}
}

// expired reports whether the clock ran out.
func (s *silence) expired() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fired
}

func (s *silence) stop() { s.timer.Stop() }

// reader returns src, which resets the clock with every read and, for a
// person at a terminal, stops it while they type.
func (s *silence) reader(src io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if s.typing {
			s.wait(true)
			defer s.wait(false)
		}
		n, err := src.Read(p)
		s.heard()
		return n, err
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
