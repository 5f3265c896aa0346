package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ),
// which Linux fixes at 100 per second for user space.
const clockTicks = 100

// process observes a local server through /proc: CPU time and resident memory.
type process struct {
	pid      int
	pageSize int64
}

// procSample is one reading of a process's counters.
type procSample struct {
	cpu time.Duration // user + system time since the process started
	rss int64         // resident memory in bytes
	err error
}

// observe checks that pid can be read and returns a process for it.
func observe(pid int) (*process, error) {
	p := &process{pid: pid, pageSize: int64(os.Getpagesize())}
	if s := p.sample(); s.err != nil {
		return nil, fmt.Errorf("cannot observe server process %d: %w", pid, s.err)
	}
	return p, nil
}

// sample reads the process's counters now. A nil process yields an empty
// sample, so callers need not check whether -pid was given.
func (p *process) sample() procSample {
	if p == nil {
		return procSample{}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return procSample{err: err}
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return procSample{err: err}
	}
	statm, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", p.pid))
	if err != nil {
		return procSample{err: err}
	}
	pages, err := parseStatmResident(statm)
	if err != nil {
		return procSample{err: err}
	}
	return procSample{cpu: cpu, rss: pages * p.pageSize}
}

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat.
func parseStatCPU(stat []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself; the fields after the last ')' are plain.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat format")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat format: %d fields", len(f)+2)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil || utime < 0 || stime < 0 {
		return 0, fmt.Errorf("unexpected /proc stat format: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * (time.Second / clockTicks), nil
}

// parseStatmResident returns the resident pages from /proc/PID/statm.
func parseStatmResident(statm []byte) (int64, error) {
	f := bytes.Fields(statm)
	if len(f) < 2 {
		return 0, fmt.Errorf("unexpected /proc statm format")
	}
	n, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("unexpected /proc statm format: resident %q", f[1])
	}
	return n, nil
}

// report turns samples from the start and end of the measured window into
// the server's figures; conns, when positive, divides the memory growth.
func (p *process) report(before, after procSample, ops int64, conns int) *Server {
	s := &Server{PID: p.pid, RSSBefore: before.rss, RSSAfter: after.rss}
	if before.err != nil || after.err != nil {
		s.Error = fmt.Sprint(firstErr(before.err, after.err))
		return s
	}
	cpu := after.cpu - before.cpu
	s.CPUSeconds = cpu.Seconds()
	if ops > 0 {
		s.CPUPerOpNs = float64(cpu.Nanoseconds()) / float64(ops)
	}
	if conns > 0 {
		s.RSSPerConn = float64(after.rss-before.rss) / float64(conns)
	}
	return s
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
