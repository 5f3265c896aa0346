package netsim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParsePath reads a Path from its text form, comma-separated settings such
// as "delay=150ms,jitter=30ms,rate=1000000,segment=536,half-close=close,
// idle=30s,tamper=flip@600": the form `echod path -simulate` takes and
// String gives. An empty string is the zero Path.
func ParsePath(s string) (Path, error) {
	var p Path
	if strings.TrimSpace(s) == "" {
		return p, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return Path{}, fmt.Errorf("%q: want KEY=VALUE (delay, jitter, rate, segment, half-close, idle, tamper)", item)
		}
		var err error
		switch key {
		case "delay":
			p.Delay, err = time.ParseDuration(val)
		case "jitter":
			p.Jitter, err = time.ParseDuration(val)
		case "idle":
			p.IdleTimeout, err = time.ParseDuration(val)
		case "rate":
			p.Rate, err = strconv.ParseInt(val, 10, 64)
		case "segment":
			p.Segment, err = strconv.Atoi(val)
		case "half-close":
			switch val {
			case "close":
				p.CloseOnHalfClose = true
			case "pass":
				p.CloseOnHalfClose = false
			default:
				err = fmt.Errorf("want close or pass")
			}
		case "tamper":
			p.Tamper, err = parseTamper(val)
		default:
			return Path{}, fmt.Errorf("unknown setting %q (want delay, jitter, rate, segment, half-close, idle, tamper)", key)
		}
		if err != nil {
			return Path{}, fmt.Errorf("%s=%s: %v", key, val, bareNumError(err))
		}
	}
	if err := p.validate(); err != nil {
		return Path{}, err
	}
	return p, nil
}

// parseTamper reads KIND@OFFSET, such as flip@600.
func parseTamper(s string) (Tamper, error) {
	kind, at, ok := strings.Cut(s, "@")
	if !ok {
		return Tamper{}, fmt.Errorf("want KIND@OFFSET, such as flip@600")
	}
	var t Tamper
	switch kind {
	case "flip":
		t.Kind = Flip
	case "drop":
		t.Kind = Drop
	case "duplicate", "dup":
		t.Kind = Duplicate
	default:
		return Tamper{}, fmt.Errorf("unknown kind %q: want flip, drop or duplicate", kind)
	}
	var err error
	t.At, err = strconv.ParseInt(at, 10, 64)
	return t, err
}

// bareNumError drops strconv's restatement of the input, which the caller
// has already named.
func bareNumError(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}

// String gives p in the form ParsePath reads, "none" for the zero Path.
func (p Path) String() string {
	var parts []string
	if p.Delay > 0 {
		parts = append(parts, "delay="+p.Delay.String())
	}
	if p.Jitter > 0 {
		parts = append(parts, "jitter="+p.Jitter.String())
	}
	if p.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate=%d", p.Rate))
	}
	if p.Segment > 0 {
		parts = append(parts, fmt.Sprintf("segment=%d", p.Segment))
	}
	if p.CloseOnHalfClose {
		parts = append(parts, "half-close=close")
	}
	if p.IdleTimeout > 0 {
		parts = append(parts, "idle="+p.IdleTimeout.String())
	}
	if p.Tamper.Kind != NoTamper {
		parts = append(parts, fmt.Sprintf("tamper=%s@%d", p.Tamper.Kind, p.Tamper.At))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}
