package bandwidth

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stage is how far a Limiter is into its egress budget's period.
type Stage uint8

// The stages, in the order a period goes through them.
const (
	// StageNormal: less than SlowAt of the budget is spent.
	StageNormal Stage = iota
	// StageSlow: SlowAt of the budget is spent. All echo together, every
	// transport and address, is held to the budget's average rate
	// (Budget.Rate), on top of the other rates: the rest lasts at least
	// the rest of SlowAt of the period.
	StageSlow
	// StageSpent: the budget is spent. New sessions are refused (Admit;
	// datagrams are dropped); open ones go on at the average rate until
	// they end, as the session limits end them.
	StageSpent
)

// SlowAt is the share of the budget past which echo slows down.
const SlowAt = 0.9

// String names the stage: normal, slow or spent.
func (s Stage) String() string {
	switch s {
	case StageNormal:
		return "normal"
	case StageSlow:
		return "slow"
	}
	return "spent"
}

// egress counts the bytes sent in the current period of a budget and
// moves through the stages.
type egress struct {
	budget Budget
	slowAt int64 // bytes
	period int64 // nanoseconds
	pace   pace  // the budget's average rate
	log    *slog.Logger
	epoch  time.Time // the Limiter's, to log times

	used  atomic.Int64  // bytes sent in this period
	end   atomic.Int64  // when this period ends
	stage atomic.Uint32 // a Stage
	slow  bucket        // from StageSlow on

	mu sync.Mutex // orders changes of stage and period

	changed     chan struct{} // a token when there is something for Run to log
	loggedStage Stage         // as of the last lines Run wrote, under mu
	loggedEnd   int64         // the period they were about, under mu
}

func newEgress(b Budget, log *slog.Logger, epoch time.Time) *egress {
	e := &egress{
		budget:  b,
		slowAt:  int64(SlowAt * float64(b.Bytes)),
		period:  int64(b.Period),
		pace:    newPace(b.Rate()),
		log:     log,
		epoch:   epoch,
		changed: make(chan struct{}, 1),
	}
	e.end.Store(e.period)
	e.loggedEnd = e.period
	return e
}

// current returns the stage at now, starting a new period if it is time.
func (e *egress) current(now int64) Stage {
	if now >= e.end.Load() {
		e.renew(now)
	}
	return Stage(e.stage.Load())
}

// spend counts n bytes about to be sent and returns how long they must
// wait, which only the slow stages ask for.
func (e *egress) spend(now int64, n int) int64 {
	st := e.current(now)
	if st < e.stageOf(e.used.Add(int64(n))) {
		st = e.enter(e.stageOf(e.used.Load()), now)
	}
	if st == StageNormal {
		return 0
	}
	return e.slow.spend(now, n, &e.pace)
}

// trySpend counts a datagram of n bytes if it may go: not once the budget
// is spent, and in the slow stage only as the average rate allows.
func (e *egress) trySpend(now int64, n int) bool {
	switch e.current(now) {
	case StageSpent:
		return false
	case StageSlow:
		if !e.slow.trySpend(now, n, &e.pace) {
			return false
		}
	}
	if e.stageOf(e.used.Add(int64(n))) > Stage(e.stage.Load()) {
		e.enter(e.stageOf(e.used.Load()), now)
	}
	return true
}

// allow is bucket.allow for the slow stages; -1 means no limit.
func (e *egress) allow(now int64) int {
	if e.current(now) == StageNormal {
		return -1
	}
	return e.slow.allow(now, &e.pace)
}

func (e *egress) stageOf(used int64) Stage {
	switch {
	case used >= e.budget.Bytes:
		return StageSpent
	case used >= e.slowAt:
		return StageSlow
	}
	return StageNormal
}

// enter moves to stage st, if it is further on, and tells Run.
func (e *egress) enter(st Stage, now int64) Stage {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur := Stage(e.stage.Load())
	if st <= cur {
		return cur
	}
	e.stage.Store(uint32(st))
	if st == StageSlow {
		// From now on the slow bucket starts full.
		e.slow.tat.Store(now)
	}
	e.notify()
	return st
}

// renew starts the period that now falls in.
func (e *egress) renew(now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	end := e.end.Load()
	if now < end {
		return
	}
	e.end.Store(end + ((now-end)/e.period+1)*e.period)
	e.used.Store(0)
	if Stage(e.stage.Swap(uint32(StageNormal))) != StageNormal {
		e.notify()
	}
}

// notify wakes Run, without waiting: the engines' event loops change
// stages, and must neither log nor block.
func (e *egress) notify() {
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// logChanges logs what changed since the last call: a renewal, and the
// stages entered since.
func (e *egress) logChanges() {
	e.mu.Lock()
	st, end, used := Stage(e.stage.Load()), e.end.Load(), e.used.Load()
	renewed := end != e.loggedEnd && e.loggedStage != StageNormal
	from := e.loggedStage
	if end != e.loggedEnd {
		from = StageNormal
	}
	e.loggedStage, e.loggedEnd = st, end
	e.mu.Unlock()

	renews := e.epoch.Add(time.Duration(end)).Round(time.Second)
	if renewed {
		e.log.Info("egress budget renewed: echo at full speed again", "budget", e.budget.String())
	}
	if from < StageSlow && st >= StageSlow {
		e.log.Warn("egress budget nearly spent: all echo slowed to the budget's average rate",
			"used", FormatSize(used), "budget", e.budget.String(), "rate", e.budget.Rate().String(), "renews", renews)
	}
	if from < StageSpent && st == StageSpent {
		e.log.Warn("egress budget spent: new sessions refused until it renews; open ones go on slowly",
			"used", FormatSize(used), "budget", e.budget.String(), "renews", renews)
	}
}
