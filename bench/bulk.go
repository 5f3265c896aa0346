package bench

import (
	"context"
	"time"

	"github.com/echod/echod/internal/pattern"
)

// bulkPeriod is the length of the pattern bulk mode streams over and over.
// Generating fresh bytes for every byte sent and again for every byte
// checked would make the load generator slower than a fast server; a
// repeating pattern costs only a comparison. Its odd length means no write
// or read size lines up with it, so an echo of stale or misplaced data is
// caught unless it is off by an exact multiple of about a mebibyte.
const bulkPeriod = 1<<20 - 3

// newBulkPattern returns bulkPeriod bytes of pattern, printable if text,
// followed by its first tail bytes again, so that any tail bytes from an
// offset below bulkPeriod are one contiguous slice.
func newBulkPattern(tail int, text bool) []byte {
	b := make([]byte, bulkPeriod+tail)
	src := pattern.NewStream(0xb01c)
	if text {
		src = pattern.NewTextStream(0xb01c)
	}
	src.Read(b[:bulkPeriod])
	for i := bulkPeriod; i < len(b); i += bulkPeriod {
		copy(b[i:], b[:bulkPeriod])
	}
	return b
}

// bulkRead is the most bulk mode reads at once.
const bulkRead = 64 << 10

// bulk streams the pattern to c as fast as the server takes it, in writes
// of Size bytes, while this goroutine reads the echo and verifies it. Each
// verified byte is one operation.
func (r *runner) bulk(ctx context.Context, w int, c conn, seed uint64) (int64, error) {
	start := int(seed % bulkPeriod) // connections start at different places
	stop := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		off := start
		for {
			select {
			case <-stop:
				wrote <- nil
				return
			default:
			}
			if _, err := c.Write(r.bulkPattern[off : off+r.cfg.Size]); err != nil {
				wrote <- err
				return
			}
			off = (off + r.cfg.Size) % bulkPeriod
		}
	}()

	n, err := r.verifyBulk(ctx, w, c, start)
	close(stop)
	// Unblock a writer stuck on a server that stopped reading.
	c.SetWriteDeadline(aLongTimeAgo)
	werr := <-wrote
	if err == nil && ctx.Err() == nil {
		err = werr
	}
	return n, err
}

// verifyBulk reads from c and checks every byte against the pattern from
// offset start.
func (r *runner) verifyBulk(ctx context.Context, w int, c conn, start int) (int64, error) {
	buf := make([]byte, bulkRead)
	off := start
	var total int64
	for {
		// A read deadline only: the writer may wait on a full socket for
		// as long as the server takes to drain it.
		c.SetReadDeadline(time.Now().Add(r.cfg.Timeout))
		if ctx.Err() != nil {
			return total, nil
		}
		n, err := c.Read(buf)
		if n > 0 {
			if i := pattern.FirstDiff(buf[:n], r.bulkPattern[off:off+n]); i >= 0 {
				return total, r.mismatch(w, &pattern.Mismatch{Offset: total + int64(i), Got: buf[i], Want: r.bulkPattern[off+i]})
			}
			off = (off + n) % bulkPeriod
			total += int64(n)
			r.complete(w, int64(n), -1)
		}
		if err != nil {
			return total, err
		}
	}
}
