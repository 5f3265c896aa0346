package target

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// UDPAddr returns addr (HOST:PORT) with its host looked up, preferring
// IPv4. A TCP dial falls back from an address that refuses to the next,
// but a UDP "connection" to the wrong one fails only when no reply comes:
// a name such as localhost, with IPv4 and IPv6 addresses, is taken as IPv4,
// where a server's net.ListenPacket("udp", "localhost:N") listens.
func UDPAddr(ctx context.Context, addr string) (string, error) {
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
