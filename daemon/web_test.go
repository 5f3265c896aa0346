package daemon

import (
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// An admitted web connection half-closes as the TCP connection inside it
// does: net/http half-closes before it closes a connection with a body
// left unread, so that the client reads the answer instead of a reset.
// It counts as open until closed, once however often it is closed.
func TestAdmittedConnHalfClosesAndCounts(t *testing.T) {
	var open atomic.Int64
	released := 0
	l := &admitListener{
		Listener: testkit.Listen(t),
		reserve:  func(netip.Addr) (func(), bool) { return func() { released++ }, true },
		open:     &open,
	}
	client := testkit.Dial(t, l.Addr().String())
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if open.Load() != 1 {
		t.Fatalf("%d open after an accept, want 1", open.Load())
	}
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		t.Fatal("an admitted TCP connection hides CloseWrite")
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("client read %d, %v after CloseWrite; want EOF", n, err)
	}
	// The server still reads what the client sends after the half-close.
	client.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("read after CloseWrite: %v", err)
	}
	c.Close()
	c.Close()
	if open.Load() != 0 || released != 1 {
		t.Fatalf("after two Closes: %d open, %d releases; want 0 and 1", open.Load(), released)
	}
}
