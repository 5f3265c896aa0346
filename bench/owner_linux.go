package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownsPort reports whether process pid holds a socket bound to port:
// listening, for TCP, or bound at all, for UDP. known is false when
// nothing in the process's network namespace is bound to the port (a port
// forwarded by NAT or by another machine), so that no one can be named.
// It reads /proc: the process's descriptors, and the sockets of its
// network namespace.
func ownsPort(pid, port int, udp bool) (owns, known bool) {
	held, err := socketInodes(pid)
	if err != nil {
		return false, false
	}
	files := []string{"tcp", "tcp6"}
	if udp {
		files = []string{"udp", "udp6"}
	}
	for _, f := range files {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, inode := range boundInodes(data, port, !udp) {
			known = true
			if held[inode] {
				return true, true
			}
		}
	}
	return false, known
}

// socketInodes returns the inodes of the sockets among pid's descriptors.
func socketInodes(pid int) (map[string]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	held := make(map[string]bool)
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			held[strings.TrimSuffix(inode, "]")] = true
		}
	}
	return held, nil
}

// tcpListen is the state of a listening socket in /proc/net/tcp.
const tcpListen = "0A"

// boundInodes returns the inodes of the sockets in a /proc/net/{tcp,udp}[6]
// table whose local port is port (only listening ones when listening).
func boundInodes(table []byte, port int, listening bool) []string {
	var inodes []string
	sc := bufio.NewScanner(bytes.NewReader(table))
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		_, hexPort, ok := strings.Cut(f[1], ":")
		p, err := strconv.ParseUint(hexPort, 16, 16)
		if !ok || err != nil || int(p) != port || (listening && f[3] != tcpListen) {
			continue
		}
		inodes = append(inodes, f[9])
	}
	return inodes
}
