package session

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// clock is the engine's clock in a synctest bubble: fake time, which
// moves only when every goroutine in the bubble waits.
type clock struct{ epoch time.Time }

func newClock() clock         { return clock{time.Now()} }
func (c clock) now() int64    { return int64(time.Since(c.epoch)) }
func (c clock) since() string { return time.Since(c.epoch).String() }

// watch drives s under p as the goroutine engine's watchdog does, checking
// at p.Next, until Due says to close or stop; it returns the action and
// when it came. mu guards s, which a client goroutine may be moving bytes
// on.
func watch(p *Policy, s *State, mu *sync.Mutex, c clock, goodbye bool) (Action, time.Duration) {
	for {
		mu.Lock()
		next := p.Next(s, c.now())
		mu.Unlock()
		if next <= 0 {
			return Continue, 0
		}
		time.Sleep(next)
		mu.Lock()
		a := p.Due(s, c.now(), goodbye)
		mu.Unlock()
		if a != Continue {
			return a, time.Duration(c.now())
		}
	}
}

func TestIdleEndsASessionWithoutProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Idle: time.Second})
		c := newClock()
		s := p.Start(c.now())
		var mu sync.Mutex
		// A client that sends every 300 ms is never idle.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 10 {
				time.Sleep(300 * time.Millisecond)
				mu.Lock()
				p.Read(&s, 10, c.now())
				p.Wrote(&s, 10, c.now())
				p.Unsent(&s, 0, c.now())
				mu.Unlock()
			}
		}()
		a, at := watch(p, &s, &mu, c, false)
		<-done
		if a != Close {
			t.Fatalf("Due = %v, want Close", a)
		}
		// The last progress at 3 s; the check every 125 ms sees it idle
		// at 4 s, at most an eighth late.
		if at < 4*time.Second || at > 4*time.Second+time.Second/8 {
			t.Fatalf("closed at %v, want within an eighth after 4s", at)
		}
		if got := p.Ended(&s, Open); got != IdleTimeout {
			t.Fatalf("Ended = %v, want IdleTimeout", got)
		}
		// The reason stands however the I/O then ends.
		if got := p.Ended(&s, Reset); got != IdleTimeout {
			t.Fatalf("Ended after a reset = %v, want IdleTimeout", got)
		}
		if s.In() != 100 || s.Out() != 100 {
			t.Fatalf("counted %d in, %d out; want 100 each", s.In(), s.Out())
		}
	})
}

func TestAClientTakingEchoOffTheSendBufferIsProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Idle: time.Second})
		c := newClock()
		s := p.Start(c.now())
		p.Read(&s, 1<<20, c.now())
		p.Wrote(&s, 1<<20, c.now())
		// The write waits on a full send buffer the client drains by
		// 64 KiB a second: a new baseline, then less each time.
		unsent := 1 << 20
		for range 5 {
			time.Sleep(time.Second / 2)
			if !p.WantUnsent(&s, c.now(), time.Second/16) {
				t.Fatalf("at %s: WantUnsent = false with a write waiting", c.since())
			}
			p.Unsent(&s, unsent, c.now())
			unsent -= 32 << 10
			if a := p.Due(&s, c.now(), false); a != Continue {
				t.Fatalf("at %s: Due = %v while the client reads", c.since(), a)
			}
		}
		// It stops reading: the same count is no progress.
		for range 3 {
			time.Sleep(time.Second / 2)
			p.Unsent(&s, unsent, c.now())
		}
		if a := p.Due(&s, c.now(), false); a != Close {
			t.Fatalf("Due = %v a second and a half after the client stopped reading, want Close", a)
		}
		// Once the buffer is seen empty, there is nothing to ask until
		// the next read or write.
		s2 := p.Start(c.now())
		p.Wrote(&s2, 10, c.now())
		p.Unsent(&s2, 0, c.now())
		time.Sleep(time.Second / 2)
		if p.WantUnsent(&s2, c.now(), time.Second/16) {
			t.Fatal("WantUnsent after the send buffer was seen empty")
		}
		// A read: its echo's write may block for long before it is
		// reported, and the client taking it is progress meanwhile.
		p.Read(&s2, 10, c.now())
		time.Sleep(time.Second / 2)
		if !p.WantUnsent(&s2, c.now(), time.Second/16) {
			t.Fatal("WantUnsent = false while a read's echo may be waiting to be written")
		}
	})
}

func TestDurationEndsEvenABusySession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Idle: time.Second, Duration: 3 * time.Second})
		c := newClock()
		s := p.Start(c.now())
		var mu sync.Mutex
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 40 {
				time.Sleep(100 * time.Millisecond)
				mu.Lock()
				p.Read(&s, 1, c.now())
				mu.Unlock()
			}
		}()
		a, at := watch(p, &s, &mu, c, false)
		if a != Close || at != 3*time.Second {
			t.Fatalf("Due = %v at %v, want Close at exactly 3s", a, at)
		}
		if got := p.Ended(&s, Open); got != MaxDuration {
			t.Fatalf("Ended = %v, want MaxDuration", got)
		}
		<-done
	})
}

func TestTheByteCapFinishesThenLingers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Idle: 10 * time.Second, Duration: time.Minute, Bytes: 100, Linger: 2 * time.Second})
		c := newClock()
		s := p.Start(c.now())
		if got := p.ReadLimit(&s, 64); got != 64 {
			t.Fatalf("ReadLimit = %d, want 64", got)
		}
		if p.Read(&s, 64, c.now()) {
			t.Fatal("at the cap after 64 of 100 bytes")
		}
		if got := p.ReadLimit(&s, 64); got != 36 {
			t.Fatalf("ReadLimit after 64 = %d, want the 36 left", got)
		}
		if !p.Read(&s, 36, c.now()) || !p.AtCap(&s) {
			t.Fatal("not at the cap after exactly 100 bytes")
		}
		p.Wrote(&s, 100, c.now())
		p.Finish(&s, MaxBytes, c.now())
		if !s.Finishing() || p.AtCap(&s) {
			t.Fatalf("after Finish: Finishing %v, AtCap %v; want true, false", s.Finishing(), p.AtCap(&s))
		}
		// The client takes nothing: the linger, not the idle time, ends it.
		a, at := watch(p, &s, new(sync.Mutex), c, false)
		if a != Close || at < 2*time.Second || at > 2*time.Second+2*time.Second/8 {
			t.Fatalf("Due = %v at %v, want Close an eighth or less after the 2s linger", a, at)
		}
		if got := p.Ended(&s, Open); got != MaxBytes {
			t.Fatalf("Ended = %v, want MaxBytes", got)
		}
	})
}

func TestAFinishingSessionEndsForItsCapWhateverComesNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Duration: time.Second, Bytes: 10})
		c := newClock()
		s := p.Start(c.now())
		p.Read(&s, 10, c.now())
		p.Finish(&s, MaxBytes, c.now())
		// The client closes its side: an EOF, but the cap ended it.
		if got := p.Ended(&s, EOF); got != MaxBytes {
			t.Fatalf("Ended(EOF) while finishing = %v, want MaxBytes", got)
		}
		// The duration still cuts the linger short, under the same reason.
		time.Sleep(time.Second)
		if a := p.Due(&s, c.now(), false); a != Close {
			t.Fatalf("Due past the duration = %v, want Close", a)
		}
		if got := p.Ended(&s, Open); got != MaxBytes {
			t.Fatalf("Ended = %v, want MaxBytes", got)
		}
	})
}

func TestATimeLimitAsksAProcessorToSayGoodbye(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Idle: time.Second, Linger: 2 * time.Second})
		c := newClock()
		s := p.Start(c.now())
		a, at := watch(p, &s, new(sync.Mutex), c, true)
		if a != Stop || at < time.Second || at > time.Second+time.Second/8 {
			t.Fatalf("Due = %v at %v, want Stop once idle", a, at)
		}
		if !s.Finishing() {
			t.Fatal("not finishing after Stop")
		}
		// The goodbye is written and taken; then nothing.
		p.Wrote(&s, 4, c.now())
		p.Unsent(&s, 0, c.now())
		a, at = watch(p, &s, new(sync.Mutex), c, true)
		if a != Close || at < 3*time.Second {
			t.Fatalf("Due = %v at %v, want Close after the linger", a, at)
		}
		if got := p.Ended(&s, Open); got != IdleTimeout {
			t.Fatalf("Ended = %v, want IdleTimeout", got)
		}
	})
}

// A session stopped for its duration is past its duration at every check
// that follows: the goodbye still gets its linger, not a cut at the next
// check (the goroutine engine's timer checks again at once).
func TestTheDurationsGoodbyeIsNotCutByTheDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Duration: time.Second, Linger: 2 * time.Second})
		c := newClock()
		s := p.Start(c.now())
		a, at := watch(p, &s, new(sync.Mutex), c, true)
		if a != Stop || at != time.Second {
			t.Fatalf("Due = %v at %v, want Stop at the duration", a, at)
		}
		if a := p.Due(&s, c.now(), true); a != Continue {
			t.Fatalf("Due right after Stop = %v, want Continue while the goodbye is written", a)
		}
		a, at = watch(p, &s, new(sync.Mutex), c, true)
		if a != Close || at < 3*time.Second {
			t.Fatalf("Due = %v at %v, want Close after the linger", a, at)
		}
		if got := p.Ended(&s, Open); got != MaxDuration {
			t.Fatalf("Ended = %v, want MaxDuration", got)
		}
	})
}

func TestQuietTrafficIsNoProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := New(Limits{Idle: time.Second})
		c := newClock()
		s := p.Start(c.now())
		// A keep-alive every 200 ms, read and answered, taken back.
		for range 4 {
			time.Sleep(200 * time.Millisecond)
			last := s.Last()
			p.Read(&s, 4, c.now())
			p.Wrote(&s, 4, c.now())
			p.Quiet(&s, last)
		}
		time.Sleep(200 * time.Millisecond)
		if a := p.Due(&s, c.now(), false); a != Close || p.Ended(&s, Open) != IdleTimeout {
			t.Fatalf("Due = %v after a second of keep-alives only, want Close for IdleTimeout", a)
		}
		if s.In() != 16 || s.Out() != 16 {
			t.Fatalf("counted %d in, %d out; the keep-alives' bytes count as bytes", s.In(), s.Out())
		}
	})
}

func TestEndsOfTheIO(t *testing.T) {
	p := New(Limits{})
	for _, io := range []End{EOF, Reset, Closed, Failed} {
		s := p.Start(0)
		if got := p.Ended(&s, io); got != io {
			t.Errorf("Ended(%v) of an open session = %v", io, got)
		}
	}
	s := p.Start(0)
	if got := p.Ended(&s, Open); got != Closed {
		t.Errorf("Ended(Open) of an open session = %v, want Closed", got)
	}
	s = p.Start(0)
	p.Finish(&s, Done, 0)
	if got := p.Ended(&s, EOF); got != Done {
		t.Errorf("Ended(EOF) after the processor finished = %v, want Done", got)
	}
	// Without limits nothing is due, ever, and reading is unbounded.
	if p.Next(&s, 0) != 0 || p.Due(&s, int64(1000*time.Hour), false) != Continue || p.ReadLimit(&s, 7) != 7 {
		t.Error("a policy without limits applies one")
	}
}

func TestLimitsAreClamped(t *testing.T) {
	p := New(Limits{Idle: -time.Second, Duration: 1 << 62, Bytes: -5})
	l := p.Limits()
	if l.Idle != 0 || l.Duration != longest || l.Bytes != 0 {
		t.Fatalf("New clamped to %+v; want no idle, a century, no byte cap", l)
	}
	s := p.Start(0)
	// Far in the future, no overflow into the past.
	if p.Due(&s, int64(longest)-1, false) != Continue || p.Due(&s, int64(longest), false) != Close {
		t.Fatal("the century-long duration is not applied exactly")
	}
}

func TestSweepEvery(t *testing.T) {
	for _, tc := range []struct {
		l         Limits
		finishing bool
		want      time.Duration
	}{
		{Limits{}, false, 0},
		{Limits{Linger: 2 * time.Second}, false, 0},
		{Limits{Linger: 2 * time.Second}, true, time.Second / 8},
		{Limits{Idle: time.Minute}, false, time.Second},
		{Limits{Idle: time.Second, Duration: time.Minute}, false, time.Second / 16},
		{Limits{Duration: 5 * time.Millisecond}, false, time.Millisecond},
		{Limits{Idle: time.Minute, Bytes: 1, Linger: 2 * time.Second}, false, time.Second / 8},
	} {
		if got := New(tc.l).SweepEvery(tc.finishing); got != tc.want {
			t.Errorf("%+v, finishing %v: sweep every %v, want %v", tc.l, tc.finishing, got, tc.want)
		}
	}
}
