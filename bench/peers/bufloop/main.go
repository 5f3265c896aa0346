// Command bufloop is a baseline echo server for bench/compare.sh: one
// goroutine per connection reading into its own 32 KiB buffer and writing
// back what it read, the way most Go echo servers are first written.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7009", "`HOST:PORT` to serve TCP echo on")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bufloop: %v\n", err)
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
		go serve(c)
	}
}

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
