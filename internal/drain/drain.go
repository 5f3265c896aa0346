// Package drain is the end of a graceful shutdown that echo.Server and
// web.Handler share: wait for the sessions still open to end, and if the
// deadline comes first, end them and wait for that.
package drain

import (
	"context"
	"sync"
)

// Wait waits until sessions is done or ctx ends. If ctx ends first, it
// calls cut, which must end every session, waits for them after all, and
// returns ctx's error: nothing outlives Wait either way.
func Wait(ctx context.Context, sessions *sync.WaitGroup, cut func()) error {
	done := make(chan struct{})
	go func() {
		sessions.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		cut()
		<-done
		return ctx.Err()
	}
}
