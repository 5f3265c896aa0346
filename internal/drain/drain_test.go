package drain

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestWaitReturnsOnceTheSessionsEnd(t *testing.T) {
	var wg sync.WaitGroup
	end := make(chan struct{})
	wg.Go(func() { <-end })
	close(end)
	cut := false
	if err := Wait(context.Background(), &wg, func() { cut = true }); err != nil || cut {
		t.Fatalf("Wait = %v, cut %v; want nil without a cut", err, cut)
	}
}

func TestWaitCutsAtTheDeadlineAndWaitsForTheCut(t *testing.T) {
	var wg sync.WaitGroup
	end := make(chan struct{})
	ended := false
	wg.Go(func() {
		<-end
		time.Sleep(10 * time.Millisecond) // a session that takes a moment to end
		ended = true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := Wait(ctx, &wg, func() { close(end) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want %v", err, context.DeadlineExceeded)
	}
	if !ended {
		t.Fatal("Wait returned before the session it cut had ended")
	}
}
