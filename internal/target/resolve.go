package target

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Resolve returns addr (HOST:PORT) with its host looked up once, preferring
// IPv4; an IP address or an empty host is returned as it is. A UDP client
// needs it: a TCP dial falls back from an address that refuses to the
// next, but a UDP "connection" to the wrong one fails only when no reply
// comes, and a name such as localhost, with IPv4 and IPv6 addresses, is
// most often served on IPv4 (where net.ListenPacket("udp", "localhost:N")
// listens). A load generator needs it so that its connects do not each
// wait for a lookup.
func Resolve(ctx context.Context, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if _, err := netip.ParseAddr(host); err == nil || host == "" {
		return addr, nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return "", fmt.Errorf("look up %s: %w", host, err)
	}
	ip := ips[0]
	for _, a := range ips {
		if a.Unmap().Is4() {
			ip = a
			break
		}
	}
	return net.JoinHostPort(ip.Unmap().String(), port), nil
}
