package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ShardStats is one shard's row in a merged Result, to spot a slow node.
type ShardStats struct {
	Shard      string        `json:"shard"`
	Host       string        `json:"host,omitempty"`
	Conns      int           `json:"conns"`
	Seconds    float64       `json:"seconds"`
	Ops        int64         `json:"ops"`
	OpsPerSec  float64       `json:"ops_per_sec"`
	P50        time.Duration `json:"p50_ns,omitempty"`
	P99        time.Duration `json:"p99_ns,omitempty"`
	Errors     int64         `json:"errors"`
	Mismatches int64         `json:"mismatches"`
}

// maxApart is the furthest apart shards of one run may start.
const maxApart = 24 * time.Hour

// maxInput bounds what ReadResults reads, so a wrong file cannot exhaust
// memory.
const maxInput = 1 << 30

// kubectlPrefix is what kubectl logs --prefix puts before each line.
var kubectlPrefix = regexp.MustCompile(`^\[pod/[^\]]*\] ?`)

// ReadResults reads the JSON results (bench -json) in r: one or several
// documents, concatenated or between other lines, as kubectl logs prints
// several pods' output (with or without --prefix). A document starts with
// a "{" at the beginning of a line; other lines are skipped.
func ReadResults(r io.Reader) ([]*Result, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("input is over %d MiB", maxInput>>20)
	}
	// Lines with a pod's prefix go to that pod's stream, so that pods
	// whose lines interleave (kubectl logs -f) still yield whole documents.
	streams := map[string]*bytes.Buffer{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), maxInput)
	for sc.Scan() {
		line := sc.Bytes()
		prefix := kubectlPrefix.Find(line)
		b := streams[string(prefix)]
		if b == nil {
			b = new(bytes.Buffer)
			streams[string(prefix)] = b
			order = append(order, string(prefix))
		}
		b.Write(line[len(prefix):])
		b.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	var results []*Result
	for _, p := range order {
		results = append(results, scanResults(streams[p].Bytes())...)
	}
	return results, nil
}

// scanResults decodes the results in text, skipping other lines.
func scanResults(rest []byte) []*Result {
	var results []*Result
	for len(rest) > 0 {
		if rest[0] == '{' {
			dec := json.NewDecoder(bytes.NewReader(rest))
			var res Result
			if err := dec.Decode(&res); err == nil && res.Mode != "" {
				results = append(results, &res)
				rest = rest[dec.InputOffset():]
				continue
			}
		}
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		rest = rest[i+1:]
	}
	return results
}

// Merge combines the results of the shards of one run (Config.Shard) into
// one: counts and rates add up, the latency histograms merge into exact
// percentiles for the whole, and Shards holds one row per shard. It fails
// when the results are not of one run: different modes or sizes, a shard
// twice or missing.
func Merge(results []*Result) (*Result, error) {
	if len(results) == 0 {
		return nil, errors.New("no results to merge")
	}
	if err := checkShards(results); err != nil {
		return nil, err
	}
	first := results[0]
	m := &Result{
		Mode: first.Mode, Addr: first.Addr, URL: first.URL, MessageType: first.MessageType, Depth: first.Depth, Size: first.Size, Unit: first.Unit,
		ErrorsByKind: map[string]int64{},
	}
	all, fromSend := newHistogram(), newHistogram()
	steps := newStepSums(first)
	hints := map[string]bool{}
	for i, r := range results {
		name := r.Shard
		if name == "" {
			name = fmt.Sprintf("#%d", i+1)
		}
		if r.Mode != m.Mode || r.Size != m.Size || r.Depth != m.Depth || r.Unit != m.Unit || r.MessageType != m.MessageType {
			return nil, fmt.Errorf("shard %s ran %s, not %s like shard %s: not one run", name, r.describe(), first.describe(), firstName(first))
		}
		if r.Addr != m.Addr {
			m.Addr = "several servers"
		}
		if r.URL != m.URL {
			m.URL = ""
		}
		m.Conns += r.Conns
		m.Rate += r.Rate
		m.RampTo += r.RampTo
		if sc := r.Schedule; sc != nil {
			if m.Schedule == nil {
				m.Schedule = &Schedule{Slack: sc.Slack}
			}
			m.Schedule.Behind += sc.Behind
			mergeEncoded(fromSend, sc.HistogramFromSend)
		}
		if err := steps.add(name, r); err != nil {
			return nil, err
		}
		m.Ops += r.Ops
		m.Bytes += r.Bytes
		m.OpsPerSec += r.OpsPerSec
		m.MBPerSec += r.MBPerSec
		m.Seconds = max(m.Seconds, r.Seconds)
		m.Errors += r.Errors
		for k, n := range r.ErrorsByKind {
			m.ErrorsByKind[k] += n
		}
		if m.FirstError == "" && r.FirstError != "" {
			m.FirstError = fmt.Sprintf("shard %s: %s", name, r.FirstError)
		}
		m.Mismatches += r.Mismatches
		if m.FirstMismatch == nil && r.FirstMismatch != nil {
			fm := *r.FirstMismatch
			fm.Text = fmt.Sprintf("shard %s: %s", name, fm.Text)
			m.FirstMismatch = &fm
		}
		m.Interrupted = m.Interrupted || r.Interrupted
		if r.Idle != nil {
			if m.Idle == nil {
				m.Idle = &IdleStats{}
			}
			m.Idle.Opened += r.Idle.Opened
			m.Idle.Served += r.Idle.Served
			m.Idle.OpenSeconds = max(m.Idle.OpenSeconds, r.Idle.OpenSeconds)
		}
		if r.UDP != nil {
			if m.UDP == nil {
				m.UDP = &UDPStats{}
			}
			m.UDP.Sent += r.UDP.Sent
			m.UDP.Lost += r.UDP.Lost
			m.UDP.Late += r.UDP.Late
		}
		for _, h := range r.Hints {
			if !hints[h] {
				hints[h] = true
				m.Hints = append(m.Hints, h)
			}
		}
		if r.Latency != nil {
			if r.Histogram == "" {
				return nil, fmt.Errorf("shard %s has latencies but no histogram to merge (made by an older echod?)", name)
			}
			h, err := decodeHistogram(r.Histogram)
			if err != nil {
				return nil, fmt.Errorf("shard %s: %w", name, err)
			}
			all.Merge(h)
		}
		if !r.Start.IsZero() && (m.Start.IsZero() || r.Start.Before(m.Start)) {
			m.Start = r.Start
		}
		row := ShardStats{Shard: name, Host: r.Host, Conns: r.Conns, Seconds: r.Seconds, Ops: r.Ops,
			OpsPerSec: r.OpsPerSec, Errors: r.Errors, Mismatches: r.Mismatches}
		if r.Latency != nil {
			row.P50, row.P99 = r.Latency.P50, r.Latency.P99
		}
		m.Shards = append(m.Shards, row)
	}
	if len(m.ErrorsByKind) == 0 {
		m.ErrorsByKind = nil
	}
	m.Duration = time.Duration(m.Seconds * float64(time.Second))
	m.Latency = summarize(all)
	if all.TotalCount() > 0 {
		b, err := all.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
		if err != nil {
			return nil, fmt.Errorf("encode merged histogram: %w", err)
		}
		m.Histogram = string(b)
	}
	if m.Schedule != nil {
		m.Schedule.LatencyFromSend, m.Schedule.HistogramFromSend = summarize(fromSend), encode(fromSend)
	}
	m.Steps = steps.rows()
	var last time.Time
	for _, r := range results {
		if r.Start.After(last) {
			last = r.Start
		}
	}
	apart := last.Sub(m.Start)
	if !m.Start.IsZero() && apart > maxApart {
		return nil, fmt.Errorf("the shards started %v apart: not one run", apart.Round(time.Second))
	}
	m.Series = mergeSeries(m.Start, results)
	if !m.Start.IsZero() && apart > time.Second {
		m.Hints = append(m.Hints, fmt.Sprintf("the shards started up to %v apart: the rates add up as if they ran at once; start them together with -start-at", apart.Round(100*time.Millisecond)))
	}
	return m, nil
}

func firstName(r *Result) string {
	if r.Shard != "" {
		return r.Shard
	}
	return "#1"
}

// checkShards fails when the results name their shards and one is missing
// or there twice (a Job's pod retried, both logs taken).
func checkShards(results []*Result) error {
	n := 0
	seen := map[int]bool{}
	for _, r := range results {
		if r.Shard == "" {
			continue
		}
		i, ni, err := ParseShard(r.Shard)
		if err != nil {
			return err
		}
		if n != 0 && ni != n {
			return fmt.Errorf("shard %s is of a run in %d shards, another of %d: not one run", r.Shard, ni, n)
		}
		n = ni
		if seen[i] {
			return fmt.Errorf("shard %s appears twice (a retried pod? keep one result per shard)", r.Shard)
		}
		seen[i] = true
	}
	if n == 0 {
		return nil
	}
	if len(seen) != len(results) {
		return errors.New("some results name their shard and some do not: not one run")
	}
	var missing []string
	for i := range n {
		if !seen[i] {
			missing = append(missing, fmt.Sprintf("%d/%d", i, n))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("have %d of %d shards; missing %v", len(seen), n, missing)
	}
	sort.SliceStable(results, func(a, b int) bool {
		i, _, _ := ParseShard(results[a].Shard)
		j, _, _ := ParseShard(results[b].Shard)
		return i < j
	})
	return nil
}

// mergeSeries adds up the shards' seconds, aligned by their start times.
// Percentiles of a second cannot be merged from percentiles, so a merged
// second's latency is the worst shard's: an upper bound of the whole's.
func mergeSeries(start time.Time, results []*Result) []Second {
	var out []Second
	for _, r := range results {
		off := 0
		if !r.Start.IsZero() && !start.IsZero() {
			off = int(math.Round(r.Start.Sub(start).Seconds()))
		}
		for j, s := range r.Series {
			k := j + off
			for len(out) <= k {
				out = append(out, Second{})
			}
			o := &out[k]
			o.At = max(o.At, s.At+float64(off))
			o.Seconds = max(o.Seconds, s.Seconds)
			o.Ops += s.Ops
			o.Errors += s.Errors
			o.Mismatches += s.Mismatches
			o.CPUSeconds += s.CPUSeconds
			o.RSS += s.RSS
			if l := s.Latency; l != nil {
				if o.Latency == nil {
					o.Latency = &Latency{}
				}
				w := o.Latency
				w.Count += l.Count
				w.Mean, w.P50, w.P90 = max(w.Mean, l.Mean), max(w.P50, l.P50), max(w.P90, l.P90)
				w.P99, w.P999, w.Max = max(w.P99, l.P99), max(w.P999, l.P999), max(w.Max, l.Max)
			}
		}
	}
	return out
}

// stepSums adds up the shards' steps, row by row.
type stepSums struct {
	steps          []Step
	all, fromSend  []*hdrhistogram.Histogram
	firstShardName string
}

func newStepSums(first *Result) *stepSums {
	s := &stepSums{firstShardName: firstName(first), steps: make([]Step, len(first.Steps))}
	for range first.Steps {
		s.all = append(s.all, newHistogram())
		s.fromSend = append(s.fromSend, newHistogram())
	}
	return s
}

// add adds shard name's steps.
func (s *stepSums) add(name string, r *Result) error {
	if len(r.Steps) != len(s.steps) {
		return fmt.Errorf("shard %s ran %d %s, shard %s %d: not one run", name, len(r.Steps), plural(int64(len(r.Steps)), "step", "steps"), s.firstShardName, len(s.steps))
	}
	for i, st := range r.Steps {
		o := &s.steps[i]
		o.Rate += st.Rate
		o.Seconds = max(o.Seconds, st.Seconds)
		o.Ops += st.Ops
		o.OpsPerSec += st.OpsPerSec
		o.Behind += st.Behind
		o.Errors += st.Errors
		o.Mismatches += st.Mismatches
		mergeEncoded(s.all[i], st.Histogram)
		mergeEncoded(s.fromSend[i], st.HistogramFromSend)
	}
	return nil
}

// rows returns the merged steps, nil for none.
func (s *stepSums) rows() []Step {
	if len(s.steps) == 0 {
		return nil
	}
	for i := range s.steps {
		o := &s.steps[i]
		o.Latency, o.Histogram = summarize(s.all[i]), encode(s.all[i])
		o.LatencyFromSend, o.HistogramFromSend = summarize(s.fromSend[i]), encode(s.fromSend[i])
	}
	return s.steps
}
