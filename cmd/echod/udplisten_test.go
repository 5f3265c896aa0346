package main

import (
	"net"
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
