// Command gorilla-ws is the gorilla/websocket echo server that
// bench/ws-compare.sh measures echod's WebSocket echo against: a goroutine
// per connection reading each message whole and writing it back with its
// type, as the library's own echo example does. Pings are answered and
// close frames returned by the library's default handlers; every path
// upgrades. It lives in its own module so that echod never depends on
// gorilla/websocket.
//
// usage: gorilla-ws -listen HOST:PORT (port 0 picks a free one; logs
// "msg=listening proto=http addr=HOST:PORT" on stderr once ready)
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"

	"github.com/gorilla/websocket"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7011", "`HOST:PORT` to serve WebSocket echo on")
	flag.Parse()
	upgrader := websocket.Upgrader{
		// A benchmark peer: any origin may connect.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	echo := func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered the request with the reason
		}
		defer c.Close()
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(typ, msg); err != nil {
				return
			}
		}
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "msg=listening proto=http addr=%s\n", l.Addr())
	log.Fatal(http.Serve(l, http.HandlerFunc(echo)))
}
