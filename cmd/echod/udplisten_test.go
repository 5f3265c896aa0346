package main

import (
	"net"
	"strings"
	"testing"
	"time"
)

// -udp-listen serves UDP alone, as fly.io needs (its UDP arrives on an
// address TCP must not listen on).
func TestUDPListenServesUDPAlone(t *testing.T) {
	addrs, _ := startServeAll(t, 1, "-udp-listen", "127.0.0.1:0")
	if len(addrs["udp"]) != 1 || len(addrs["tcp"]) != 0 {
		t.Fatalf("listening on %v, want one UDP address and no TCP", addrs)
	}
	uc, err := net.Dial("udp", addrs["udp"][0])
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetDeadline(time.Now().Add(10 * time.Second))
	uc.Write([]byte("datagram"))
	buf := make([]byte, 100)
	if n, err := uc.Read(buf); err != nil || string(buf[:n]) != "datagram" {
		t.Fatalf("UDP echo: %q, %v", buf[:n], err)
	}
}

// A beginner who checks or sends to a UDP-only server without udp:// is
// told that UDP echo answers there, not only that nothing listens.
func TestTCPToUDPOnlyServerHintsAtUDP(t *testing.T) {
	addrs, _ := startServeAll(t, 1, "-udp-listen", "127.0.0.1:0")
	addr := addrs["udp"][0]
	want := "nothing is listening on " + addr + " over TCP, but UDP echo answers there"
	for _, args := range [][]string{{"check", addr}, {"check", "-udp", addr}, {"send", addr, "hi"}} {
		code, _, stderr := runCmd(t, nil, args...)
		if code == 0 || !strings.Contains(stderr, want) || !strings.Contains(stderr, "udp://"+addr) {
			t.Errorf("echod %v: exit %d, stderr %q; want it to contain %q and udp://%s", args, code, stderr, want, addr)
		}
	}
}
