// Command nbio-ws is the lesismal/nbio WebSocket echo server that
// bench/ws-compare.sh measures echod's WebSocket echo against: nbio's
// non-blocking HTTP engine, whose event loops parse frames as they arrive
// and hold no goroutine for an idle connection. Each message is written
// back with its type; pings are answered and close frames returned by the
// library's default handlers; every path upgrades. It lives in its own
// module so that echod never depends on nbio. nbio v1.6.8 calls no
// handler for an empty message, so none is echoed (echod check fails it on
// ws-sizes); bench/ws-compare.sh sends none.
//
// usage: nbio-ws -listen HOST:PORT (port 0 picks a free one; logs
// "msg=listening proto=http addr=HOST:PORT" on stderr once ready)
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:7012", "`HOST:PORT` to serve WebSocket echo on")
	flag.Parse()
	upgrader := websocket.NewUpgrader()
	// A benchmark peer: any origin may connect.
	upgrader.CheckOrigin = func(*http.Request) bool { return true }
	upgrader.OnMessage(func(c *websocket.Conn, typ websocket.MessageType, msg []byte) {
		if err := c.WriteMessage(typ, msg); err != nil {
			c.Close()
		}
	})
	echo := func(w http.ResponseWriter, r *http.Request) {
		// Upgrade hands the connection to the engine's event loop; on
		// failure it has answered the request with the reason.
		upgrader.Upgrade(w, r, nil)
	}
	// nbio does not say which port it got: the listener it is given is
	// asked instead.
	addrs := make(chan net.Addr, 1)
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{*listen},
		Handler:                 http.HandlerFunc(echo),
		ReleaseWebsocketPayload: true, // as nbio's examples do: buffers go back to its pool
		Listen: func(network, addr string) (net.Listener, error) {
			l, err := net.Listen(network, addr)
			if err == nil {
				addrs <- l.Addr()
			}
			return l, err
		},
	})
	if err := engine.Start(); err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "msg=listening proto=http addr=%s\n", <-addrs)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	engine.Stop()
}
