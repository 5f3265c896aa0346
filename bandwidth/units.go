package bandwidth

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is a bandwidth in bytes per second. Zero means no limit. As a flag or
// in text it reads and writes like "1MB/s", "512KiB/s" or "1MiB" (per
// second is implied); see ParseSize for the units.
type Rate int64

// Budget is an amount of egress allowed per period, such as 500 GB per 30
// days. The zero Budget means no budget. As text it reads "500GB/30d".
type Budget struct {
	Bytes  int64
	Period time.Duration
}

// The bounds of what the parsers accept: a period shorter than a minute is
// a rate, not a budget, and one longer than a year a mistake.
const (
	MinPeriod = time.Minute
	MaxPeriod = 366 * 24 * time.Hour
	// maxBytes bounds sizes (an exabyte less a little) so that sums of
	// them cannot overflow.
	maxBytes = 1 << 60
)

// units are the multipliers ParseSize knows: decimal as in SI, binary with
// an i. Keys are as written, apart from k and K both meaning 1000.
var units = map[string]float64{
	"": 1, "B": 1,
	"kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// ParseSize parses a number of bytes with an optional unit: B, kB or KB,
// MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), as in
// "500GB", "1.5MiB" or "65536". A lowercase b is refused: it means bits.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	if num == "" {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("%q is negative: want a size such as 1MB", s)
		}
		return 0, fmt.Errorf("%q is not a size: want a number and a unit, such as 1MB or 512KiB", s)
	}
	mult, ok := units[unit]
	if !ok {
		if strings.HasSuffix(unit, "b") || strings.HasSuffix(unit, "bit") || strings.HasSuffix(unit, "bps") {
			return 0, fmt.Errorf("%q is in bits: echod counts bytes, so write B (8 Mbit = 1MB)", s)
		}
		return 0, fmt.Errorf("%q has unknown unit %q: want B, KB, MB, GB, TB (1000s) or KiB, MiB, GiB, TiB (1024s)", s, unit)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: want a number and a unit, such as 1MB", s)
	}
	b := v * mult
	if b > maxBytes || math.IsInf(b, 0) {
		return 0, fmt.Errorf("%q is too large: at most %s", s, FormatSize(maxBytes))
	}
	if b != 0 && b < 1 {
		return 0, fmt.Errorf("%q is less than a byte", s)
	}
	return int64(math.Round(b)), nil
}

// FormatSize writes n bytes in the largest unit that divides it exactly,
// decimal first: 1000000 is "1MB", 1048576 "1MiB", 1500 "1500B".
func FormatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range [...]struct {
		name string
		size int64
	}{{"TB", 1e12}, {"TiB", 1 << 40}, {"GB", 1e9}, {"GiB", 1 << 30}, {"MB", 1e6}, {"MiB", 1 << 20}, {"KB", 1e3}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseRate parses a rate: a size (see ParseSize) per second, written with
// or without "/s", such as "1MB/s" or "1MiB". "0" means no limit.
func ParseRate(s string) (Rate, error) {
	size, per, found := strings.Cut(strings.TrimSpace(s), "/")
	if found && strings.TrimSpace(per) != "s" {
		return 0, fmt.Errorf("%q is not per second: write a rate such as 1MB/s (or 1MB, per second implied)", s)
	}
	n, err := ParseSize(size)
	if err != nil {
		return 0, err
	}
	return Rate(n), nil
}

// String writes r as ParseRate reads it: "1MB/s", or "0" for no limit.
func (r Rate) String() string {
	if r == 0 {
		return "0"
	}
	return FormatSize(int64(r)) + "/s"
}

// MarshalText and UnmarshalText make a Rate a flag (flag.TextVar) and a
// configuration value.
func (r Rate) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses text with ParseRate.
func (r *Rate) UnmarshalText(text []byte) error {
	v, err := ParseRate(string(text))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseBudget parses SIZE/PERIOD, such as "500GB/30d" or "10GiB/24h": a
// size (see ParseSize) and a period in days (30d, 1d) or as a Go duration
// (720h), from MinPeriod to MaxPeriod. "0" or "off" means no budget.
func ParseBudget(s string) (Budget, error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "off" {
		return Budget{}, nil
	}
	size, per, found := strings.Cut(s, "/")
	if !found {
		return Budget{}, fmt.Errorf("%q has no period: want SIZE/PERIOD, such as 500GB/30d", s)
	}
	n, err := ParseSize(size)
	if err != nil {
		return Budget{}, err
	}
	if n == 0 {
		return Budget{}, fmt.Errorf("%q allows nothing: a budget needs at least one byte (0 or off: no budget)", s)
	}
	d, err := parsePeriod(strings.TrimSpace(per))
	if err != nil {
		return Budget{}, fmt.Errorf("%q: %w", s, err)
	}
	return Budget{Bytes: n, Period: d}, nil
}

var errPeriod = errors.New("want a period such as 30d, 1d or 720h")

// parsePeriod reads Nd (days) or a Go duration.
func parsePeriod(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, errPeriod
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errPeriod
		}
	}
	if d < MinPeriod || d > MaxPeriod {
		return 0, fmt.Errorf("period %s is out of range: want 1m to 366d", s)
	}
	return d, nil
}

// String writes b as ParseBudget reads it, such as "500GB/30d".
func (b Budget) String() string {
	if b.Bytes == 0 {
		return "0"
	}
	per := b.Period.String()
	if b.Period%(24*time.Hour) == 0 {
		per = strconv.FormatInt(int64(b.Period/(24*time.Hour)), 10) + "d"
	}
	return FormatSize(b.Bytes) + "/" + per
}

// Rate is the average rate the budget allows: what it can sustain forever.
func (b Budget) Rate() Rate {
	if b.Bytes == 0 || b.Period <= 0 {
		return 0
	}
	return Rate(max(1, int64(float64(b.Bytes)/b.Period.Seconds())))
}

// MarshalText writes b as String does.
func (b Budget) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText parses text with ParseBudget.
func (b *Budget) UnmarshalText(text []byte) error {
	v, err := ParseBudget(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}
