// Command udploop is the UDP baseline echo server for echod bench -mode udp:
// one goroutine that reads a datagram with ReadFrom and writes it back with
// WriteTo, one system call each, the way most Go UDP echo servers are first
// written. It has no loop guard and no rate limits.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7010", "`HOST:PORT` to serve UDP echo on")
	flag.Parse()
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "udploop: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "msg=listening proto=udp addr=%s\n", pc.LocalAddr())
	buf := make([]byte, 64<<10) // the largest datagram there is
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "udploop: %v\n", err)
			os.Exit(1)
		}
		// A reply that fails is the sender's loss, as UDP allows.
		pc.WriteTo(buf[:n], addr)
	}
}
