// Command noflush is an echo server that writes through a bufio.Writer and
// closes the connection without flushing it, so the end of every echo is
// lost: docs/learn.md shows what echod check says and how to fix it.
//
//	go run ./examples/noflush [HOST:PORT]
package main

import (
	"bufio"
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
	defer conn.Close()         // Bug: closes with up to 4096 bytes still in w.
	w := bufio.NewWriter(conn) // Bug: holds what it is given until 4096 bytes are waiting.
	buf := make([]byte, 1024)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
