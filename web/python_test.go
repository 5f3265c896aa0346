package web

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/echod/echod/internal/tooltest"
)

// TestPythonWebsocketsClient echoes through the Handler with a client
// written by others: Debian's python3-websockets. The test runs Debian's
// python (/usr/bin/python3), not whichever python comes first on PATH, as
// that is where the package installs.
func TestPythonWebsocketsClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		python := "/usr/bin/python3"
		if exec.Command(python, "-c", "import websockets").Run() != nil {
			// Missing: skip, or fail under ECHOD_REQUIRE_TOOLS=1.
			tooltest.Require(t, "python3-websockets (/usr/bin/python3 with the websockets module)")
		}
		srv := serveOn(t, &Handler{}, engine).Server
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, python, "testdata/wsclient.py", wsURL(srv, "/python")).CombinedOutput()
		if err != nil {
			t.Fatalf("python3-websockets: %v\n%s", err, out)
		}
		if want := "text ok\nbinary ok\npong ok\nclosed 4001 bye\n"; string(out) != want {
			t.Fatalf("python3-websockets said:\n%s\nwant:\n%s", out, want)
		}
	})
}
