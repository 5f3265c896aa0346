// Command serial is an echo server that echoes correctly, but to one client
// at a time: docs/learn.md shows what echod check says and how to fix it.
//
//	go run ./examples/serial [HOST:PORT]
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
		handle(conn) // Bug: the next client is not accepted until this one is done.
	}
}

func handle(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 32*1024)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, err := conn.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
