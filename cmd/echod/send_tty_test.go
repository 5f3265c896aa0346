package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/echod/echod/internal/testkit"
)

// typist writes lines to send's standard input as a person would: each
// once the echo of the one before has come back, with a pause longer than
// -timeout before the next, then Ctrl-D.
func typist(t *testing.T, tty bool, lines ...string) (code int, stdout, stderr string) {
	t.Helper()
	addr := startTestServer(t, func(c net.Conn) { io.Copy(c, c) })
	in, typed := io.Pipe()
	var out, errb testkit.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(context.Background(), []string{"send", addr, "-timeout", "200ms"},
			stdio{in: in, out: &out, err: &errb, inTTY: tty, outTTY: tty})
	}()
	want := ""
	for _, l := range lines {
		io.WriteString(typed, l)
		want += l
		testkit.WaitFor(t, "the echo of "+l, func() bool { return out.String() == want })
		// Thinking about the next line for twice the -timeout: the point
		// of the test, not a synchronisation.
		time.Sleep(400 * time.Millisecond)
	}
	typed.Close() // Ctrl-D
	err := <-done
	printError(&errb, err)
	return exitCode(err), out.String(), errb.String()
}

func TestSendAtATerminalWaitsForThePerson(t *testing.T) {
	code, out, errOut := typist(t, true, "Ground Control\n", "to Major Tom")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q: a person who pauses longer than -timeout was cut off", code, errOut)
	}
	// The prompt comes back on a line of its own.
	if out != "Ground Control\nto Major Tom\n" {
		t.Errorf("printed %q", out)
	}
	if strings.Count(errOut, "Ctrl-D") != 1 {
		t.Errorf("stderr %q: want one note that Ctrl-D ends the input", errOut)
	}
}

// From a pipe that stalls, -timeout is silence after the last input, and
// the error does not call a complete echo incomplete.
func TestSendFromAStalledPipeSaysWhatIsMissing(t *testing.T) {
	code, out, errOut := typist(t, false, "hello\n")
	if code != 1 || out != "hello\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q: want exit 1 after the first line", code, out, errOut)
	}
	if !strings.Contains(errOut, "all 6 bytes sent came back") || !strings.Contains(errOut, "no more input for 200ms") {
		t.Errorf("stderr %q: want it to say the echo was complete and the input stopped", errOut)
	}
	if strings.Contains(errOut, "Ctrl-D to end") {
		t.Errorf("stderr %q: the terminal note is for terminals", errOut)
	}
}
