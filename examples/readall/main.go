// Command readall is an echo server that reads everything the client sends
// and then writes it all back. Every byte comes back, but only at the end:
// docs/learn.md shows what echod check says and how to fix it.
//
//	go run ./examples/readall [HOST:PORT]
package main

import (
	"io"
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
	data, err := io.ReadAll(conn) // Bug: waits for the client to finish, and holds all it sends.
	if err != nil {
		return
	}
	conn.Write(data)
}
