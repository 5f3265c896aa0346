package netsim_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/echod/echod/internal/netsim"
)

// A proxy in front of an echo server that delays each direction and drops
// the second byte of every echo.
func ExampleStart() {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()

	p, err := netsim.Start(context.Background(), l.Addr().String(), netsim.Path{
		Delay:  10 * time.Millisecond,
		Tamper: netsim.Tamper{Kind: netsim.Drop, At: 1},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr())
	defer c.Close()
	start := time.Now()
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	echo, _ := io.ReadAll(c)
	fmt.Printf("%s, after at least 20ms: %v\n", echo, time.Since(start) >= 20*time.Millisecond)
	// Output: hllo, after at least 20ms: true
}
