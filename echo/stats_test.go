package echo

import (
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"
)

// Byte counts move while a session lasts, not only when it ends, so that
// metrics show a long transfer as it happens; and they add up exactly.
func TestStatsCountTCPBytesAsTheyMove(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		srv, addr := startServer(t, engine)
		before := srv.Stats()
		c := dial(t, addr)
		msg := payload(1, 100000)
		go c.Write(msg)
		if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
			t.Fatal(err)
		}
		// The session is still open: the counts already show it.
		waitFor(t, "100000 bytes counted each way", func() bool {
			st := srv.Stats()
			return st.TCPBytesIn-before.TCPBytesIn == 100000 && st.TCPBytesOut-before.TCPBytesOut == 100000
		})
		if st := srv.Stats(); st.Conns != 1 {
			t.Errorf("Conns = %d during the session, want 1", st.Conns)
		}
		c.CloseWrite()
		io.Copy(io.Discard, c)
		waitFor(t, "the session to end", func() bool { return srv.Stats().Conns == 0 })
		st := srv.Stats()
		if in, out := st.TCPBytesIn-before.TCPBytesIn, st.TCPBytesOut-before.TCPBytesOut; in != 100000 || out != 100000 {
			t.Errorf("after the session: %d bytes in, %d out; want 100000 each", in, out)
		}
		if st.Accepted-before.Accepted != 1 {
			t.Errorf("Accepted grew by %d, want 1", st.Accepted-before.Accepted)
		}
	})
}

func TestStatsCountUDPDatagrams(t *testing.T) {
	srv := &Server{}
	server := startUDP(t, srv, "127.0.0.1")
	c := udpClient(t, netip.MustParseAddrPort("127.0.0.1:0"))
	sizes := []int{0, 1, 1400, 65507}
	var total uint64
	for _, n := range sizes {
		if err := udpRoundTrip(c, server, payload(uint64(n), n)); err != nil {
			t.Fatal(err)
		}
		total += uint64(n)
	}
	want := Stats{UDPDatagrams: 4, UDPReplies: 4, UDPBytesIn: total, UDPBytesOut: total}
	udpCounts := func() Stats {
		st := srv.Stats()
		return Stats{UDPDatagrams: st.UDPDatagrams, UDPReplies: st.UDPReplies, UDPBytesIn: st.UDPBytesIn, UDPBytesOut: st.UDPBytesOut}
	}
	// A reply is counted once its send returns, which may be just after
	// the client has read it: wait for the counts, then hold them exact.
	for deadline := time.Now().Add(5 * time.Second); fmt.Sprint(udpCounts()) != fmt.Sprint(want) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := udpCounts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("UDP counts %+v, want %+v", got, want)
	}
}
