package proxied

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseCIDRs parses a comma-separated list of networks, such as
// "10.0.0.0/8, 192.168.1.7, fd00::/8". A bare address stands for itself
// alone. IPv4-mapped IPv6 forms are read as the IPv4 networks they name.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, fmt.Errorf("empty network in list %q", s)
		}
		var p netip.Prefix
		if strings.Contains(item, "/") {
			var err error
			if p, err = netip.ParsePrefix(item); err != nil {
				return nil, fmt.Errorf("invalid network %q: want CIDR notation such as 10.0.0.0/8", item)
			}
		} else {
			a, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("invalid network %q: want CIDR notation such as 10.0.0.0/8 or an address", item)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("invalid network %q: zones are not allowed", item)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return nil, fmt.Errorf("invalid network %q: an IPv4-mapped network needs at least /96", item)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		prefixes = append(prefixes, p.Masked())
	}
	return prefixes, nil
}
