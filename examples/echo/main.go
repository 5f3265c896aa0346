// Command echo is a correct TCP echo server (RFC 862): it passes every
// check of echod check and the Protohackers Smoke Test.
//
//	go run ./examples/echo [HOST:PORT]
package main

import (
	"log"
	"net"
	"os"
)

func main() {
	addr := "127.0.0.1:7008"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Println("listening on", ln.Addr())
	for {
		conn, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go echo(conn) // One goroutine per client: no client waits for another.
	}
}

// echo writes back each piece as soon as it arrives, exactly the bytes read,
// and closes once the client has half-closed and all of it is written back.
func echo(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 32*1024)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, err := conn.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil { // io.EOF: the client half-closed, and all of it is echoed.
			return
		}
	}
}
