package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// hgrmTicks is the percentile iteration's ticks per half distance to 100%,
// as HdrHistogram's own tools print it.
const hgrmTicks = 5

// WriteHgrm writes the run's latency percentile spectrum in milliseconds in
// the text format of HdrHistogram's outputPercentileDistribution (.hgrm),
// which wrk2 prints and HdrHistogram's plotter reads.
func (r *Result) WriteHgrm(w io.Writer) error {
	if r.Histogram == "" {
		return errors.New("this run measured no latencies")
	}
	h, err := decodeHistogram(r.Histogram)
	if err != nil {
		return err
	}
	return writeHgrm(w, h, 1e6)
}

// writeHgrm prints h with values divided by scale, byte for byte as the
// Java HdrHistogram's outputPercentileDistribution does with three
// significant digits.
func writeHgrm(w io.Writer, h *hdrhistogram.Histogram, scale float64) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)")
	for _, b := range h.CumulativeDistributionWithTicks(hgrmTicks) {
		q := b.Quantile / 100
		if b.Quantile != 100 {
			fmt.Fprintf(bw, "%12.3f %2.12f %10d %14.2f\n", float64(b.ValueAt)/scale, q, b.Count, 1/(1-q))
		} else {
			fmt.Fprintf(bw, "%12.3f %2.12f %10d\n", float64(b.ValueAt)/scale, q, b.Count)
		}
	}
	fmt.Fprintf(bw, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", h.Mean()/scale, h.StdDev()/scale)
	fmt.Fprintf(bw, "#[Max     = %12.3f, Total count    = %12d]\n", float64(h.Max())/scale, h.TotalCount())
	buckets, subBuckets := geometry(h)
	fmt.Fprintf(bw, "#[Buckets = %12d, SubBuckets     = %12d]\n", buckets, subBuckets)
	return bw.Flush()
}

// geometry returns h's bucket and sub-bucket counts, which the library
// keeps to itself: a sub-bucket count is the power of two that holds
// 2×10^digits, and the counts array has (buckets+1)×subBuckets/2 entries.
func geometry(h *hdrhistogram.Histogram) (buckets, subBuckets int) {
	subBuckets = 1
	for float64(subBuckets) < 2*math.Pow10(int(h.SignificantFigures())) {
		subBuckets *= 2
	}
	return len(h.Export().Counts)/(subBuckets/2) - 1, subBuckets
}
