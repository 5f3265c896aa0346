// Command lines is an echo server that reads line by line. It works for
// text typed into netcat, and fails an echo client in three ways:
// docs/learn.md shows what echod check says and how to fix it.
//
//	go run ./examples/lines [HOST:PORT]
package main

import (
	"bufio"
	"fmt"
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
	// Bug: a Scanner waits for a whole line, drops its "\n" or "\r\n", and
	// gives up on a line longer than 64 KiB.
	scanner := bufio.NewScanner(conn)
	for scanner.Scan() {
		fmt.Fprintln(conn, scanner.Text()) // Bug: always "\n", sent or not.
	}
}
