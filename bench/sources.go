package bench

import (
	"fmt"
	"net/netip"
	"strings"
)

// MaxSources bounds how many addresses ParseSources expands a list to.
const MaxSources = 1 << 16

// ParseSources parses a comma-separated list of local IP addresses and
// ranges, such as "127.0.0.1,127.0.0.2" or "127.0.0.1-127.0.0.8", in the
// order given. Connections use the addresses in turn, so that each address
// brings its own set of ephemeral ports.
func ParseSources(s string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty address in source list %q", s)
		}
		first, last, isRange := strings.Cut(item, "-")
		lo, err := netip.ParseAddr(first)
		if err != nil {
			return nil, fmt.Errorf("invalid source address %q: want an IP address or FIRST-LAST", first)
		}
		lo = lo.Unmap()
		hi := lo
		if isRange {
			if hi, err = netip.ParseAddr(last); err != nil {
				return nil, fmt.Errorf("invalid source address %q: want an IP address", last)
			}
			hi = hi.Unmap()
			if lo.Is4() != hi.Is4() || hi.Less(lo) {
				return nil, fmt.Errorf("invalid source range %q: want FIRST-LAST of one family, FIRST not after LAST", item)
			}
		}
		for a := lo; ; a = a.Next() {
			if len(addrs) == MaxSources {
				return nil, fmt.Errorf("source list %q has more than %d addresses", s, MaxSources)
			}
			addrs = append(addrs, a)
			if a == hi {
				break
			}
		}
	}
	return addrs, nil
}
