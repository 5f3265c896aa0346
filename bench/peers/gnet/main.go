// Command gnet-echo is the gnet v2 echo server that bench/compare.sh
// measures echod against: the library's own echo example, with an event
// loop per usable CPU. It lives in its own module so that echod never
// depends on gnet.
//
// usage: gnet-echo -listen HOST:PORT (port 0 picks a free one; logs
// "msg=listening proto=tcp addr=HOST:PORT" on stderr once ready)
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/panjf2000/gnet/v2"
)

type echoServer struct {
	gnet.BuiltinEventEngine
	addr string
}

func (s *echoServer) OnBoot(gnet.Engine) gnet.Action {
	fmt.Fprintf(os.Stderr, "msg=listening proto=tcp addr=%s\n", s.addr)
	return gnet.None
}

func (s *echoServer) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	c.Write(buf)
	return gnet.None
}

func main() {
	listen := flag.String("listen", "127.0.0.1:7009", "`HOST:PORT` to serve TCP echo on")
	flag.Parse()
	addr := *listen
	// gnet does not report the port it got, so a free one is found first
	// (another process could take it meanwhile: a benchmark peer only).
	if _, port, err := net.SplitHostPort(addr); err == nil && port == "0" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	s := &echoServer{addr: addr}
	if err := gnet.Run(s, "tcp://"+addr, gnet.WithMulticore(true)); err != nil {
		log.Fatal(err)
	}
}
