package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// rss is the process's resident memory in bytes, the VmRSS line of
// /proc/PID/status.
func rss(pid int) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read the server's memory: %w", err)
	}
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil || kb < 0 {
			break
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("read the server's memory: no VmRSS line in /proc/%d/status", pid)
}

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ),
// which Linux fixes at 100 per second for user space.
const clockTicks = 100

// cpuTime is the process's user and system time, from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read the server's CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after the last ')' are plain, utime and stime the 12th
	// and 13th of them.
	f := bytes.Fields(stat[bytes.LastIndexByte(stat, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("read the server's CPU time: unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("read the server's CPU time: unexpected /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * (time.Second / clockTicks), nil
}
