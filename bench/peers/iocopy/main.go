// Command iocopy is the plainest Go echo server, a baseline for
// bench/compare.sh: one goroutine per connection running io.Copy, which on
// Linux moves the bytes with splice through a pipe.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7008", "`HOST:PORT` to serve TCP echo on")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iocopy: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "msg=listening proto=tcp addr=%s\n", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			// Out of file descriptors, say: wait and go on serving the
			// connections there are, as net/http does.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}
