// Command gnet-echo is the gnet v2 echo server that bench/compare.sh
// measures echod against: the library's own echo example, with every event
// loop the machine has. It lives in its own module so that echod never
// depends on gnet.
//
// usage: gnet-echo HOST:PORT   (logs "listening HOST:PORT" once ready)
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/panjf2000/gnet/v2"
)

type echoServer struct {
	gnet.BuiltinEventEngine
	addr string
}

func (s *echoServer) OnBoot(gnet.Engine) gnet.Action {
	fmt.Printf("listening %s\n", s.addr)
	return gnet.None
}

func (s *echoServer) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	c.Write(buf)
	return gnet.None
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gnet-echo HOST:PORT")
		os.Exit(2)
	}
	s := &echoServer{addr: os.Args[1]}
	if err := gnet.Run(s, "tcp://"+s.addr, gnet.WithMulticore(true)); err != nil {
		log.Fatal(err)
	}
}
