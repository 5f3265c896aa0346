package tcpinfo_test

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"

	"github.com/echod/echod/internal/tcpinfo"
	"github.com/echod/echod/internal/testkit"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOf(t *testing.T) {
	addr := testkit.Serve(t, testkit.Listen(t), func(c net.Conn) { io.Copy(c, c) })
	c := testkit.Dial(t, addr)
	c.Write([]byte("hello"))
	io.ReadFull(c, make([]byte, 5))
	for _, conn := range []net.Conn{c, tls.Client(c, &tls.Config{})} {
		ti, ok := tcpinfo.Of(conn)
		if runtime.GOOS != "linux" {
			if ok {
				t.Errorf("Of(%T) on %s = %+v, want nothing", conn, runtime.GOOS, ti)
			}
			continue
		}
		if !ok || ti.RTT <= 0 || ti.SendMSS <= 0 {
			t.Errorf("Of(%T) = %+v, %v; want a round trip and a segment size", conn, ti, ok)
		}
	}
	if _, ok := tcpinfo.Of(&net.UDPConn{}); ok {
		t.Error("Of a UDP socket says it knows its TCP state")
	}
}
