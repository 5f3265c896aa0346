package daemon

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/coreos/go-systemd/v22/activation"
)

// TLSSocketName is the FileDescriptorName= that marks a socket from systemd
// as one to serve TLS echo on; every other stream socket serves TCP echo
// (but those named HTTPSocketName and HTTPSSocketName), and every datagram
// socket UDP echo.
const TLSSocketName = "tls"

// HTTPSocketName and HTTPSSocketName are the FileDescriptorName= values
// that mark sockets from systemd to serve the web echo on, over HTTP and
// over HTTPS.
const (
	HTTPSocketName  = "http"
	HTTPSSocketName = "https"
)

// inheritedSockets are the sockets systemd opened for echod (socket
// activation), sorted by what echod serves on them.
type inheritedSockets struct {
	tcp, tls    []net.Listener   // stream sockets; tls: those named "tls"
	http, https []net.Listener   // stream sockets named "http" and "https"
	udp         []net.PacketConn // datagram sockets
}

func (s inheritedSockets) empty() bool {
	return len(s.tcp)+len(s.tls)+len(s.http)+len(s.https)+len(s.udp) == 0
}

func (s inheritedSockets) closeAll() {
	for _, l := range slices.Concat(s.tcp, s.tls, s.http, s.https) {
		l.Close()
	}
	for _, pc := range s.udp {
		pc.Close()
	}
}

// socketsFromSystemd returns the sockets passed by systemd, or none when
// echod was not socket-activated. It takes them once: the environment that
// names them is cleared, so no child process inherits it.
func socketsFromSystemd() (inheritedSockets, error) {
	var s inheritedSockets
	for _, f := range activation.Files(true) {
		// Both calls duplicate the descriptor; f itself is not needed.
		l, lerr := net.FileListener(f)
		var pc net.PacketConn
		var perr error
		if lerr != nil {
			pc, perr = net.FilePacketConn(f)
		}
		f.Close()
		switch {
		case lerr == nil && f.Name() == TLSSocketName:
			s.tls = append(s.tls, l)
		case lerr == nil && f.Name() == HTTPSocketName:
			s.http = append(s.http, l)
		case lerr == nil && f.Name() == HTTPSSocketName:
			s.https = append(s.https, l)
		case lerr == nil:
			s.tcp = append(s.tcp, l)
		case perr == nil:
			s.udp = append(s.udp, pc)
		default:
			s.closeAll()
			return inheritedSockets{}, fmt.Errorf("socket %q from systemd is neither a listening stream socket nor a datagram socket: %w", f.Name(), errors.Join(lerr, perr))
		}
	}
	return s, nil
}
