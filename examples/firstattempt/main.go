// Command firstattempt is the echo server most people write first. It
// answers, but wrongly: docs/learn.md shows what echod check says about it
// and how to fix each of its three bugs.
//
//	go run ./examples/firstattempt [HOST:PORT]
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
		go handle(conn)
	}
}

func handle(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 4096)
	result := make([]byte, 4096) // Bug: 4096 zero bytes before anything is read.
	for {
		_, err := conn.Read(buf) // Bug: how many bytes were read is thrown away...
		if err != nil {
			break
		}
		result = append(result, buf...) // ...so all 4096 bytes are appended.
	}
	conn.Write(result) // Bug: nothing is written back until the client has finished.
}
