// Package examples holds the servers of docs/learn.md, one program per
// directory; its test runs the real echod check against each of them and
// holds the guide to what it prints, so the guide cannot go stale.
package examples

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// update rewrites the guide's quoted outputs with what echod check prints
// now: go test ./examples -run GuideOutputs -update, then read the diff.
var update = flag.Bool("update", false, "rewrite the outputs quoted in "+guidePath+" and "+readmePath)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// guideAddr is the address the guide's commands use: the examples' default.
const guideAddr = "127.0.0.1:7008"

// guidePath is the guide for learners; the README quotes outputs too, held
// to the same test.
const (
	guidePath  = "../docs/learn.md"
	readmePath = "../README.md"
)

// An output is one block of the guide that quotes a command and what it
// printed: the example it ran against, the command's arguments, the lines.
type output struct {
	file    string // the guide or the README
	line    int    // the index of the block's first line (the command) in the file
	example string
	args    []string // after "echod check"
	lines   []string
}

// A code block is a listing the guide says comes from a file.
type code struct {
	in   string // the guide or the README
	file string
	text string
}

// The guide marks each quoted block with an HTML comment, invisible on the
// page, naming where it comes from:
//
//	<!-- output: examples/lines -->    the block is $ echod check ... and its output
//	<!-- code: examples/echo/main.go -->  the block is part of that file, verbatim
var marker = regexp.MustCompile(`^<!-- (output|code): (\S+) -->$`)

// parseGuide returns the marked blocks of the guide.
func parseGuide(t *testing.T, path string) ([]output, []code) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var outputs []output
	var codes []code
	for i := 0; i < len(lines); i++ {
		m := marker.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("%s:%d: %s is not followed by a fenced block", path, i+1, lines[i])
		}
		var block []string
		j := i + 2
		for ; j < len(lines) && !strings.HasPrefix(lines[j], "```"); j++ {
			block = append(block, lines[j])
		}
		if j == len(lines) {
			t.Fatalf("%s:%d: the block is never closed", path, i+2)
		}
		switch m[1] {
		case "code":
			codes = append(codes, code{in: path, file: m[2], text: strings.Join(block, "\n")})
		case "output":
			if len(block) < 2 || !strings.HasPrefix(block[0], "$ echod check ") {
				t.Fatalf("%s:%d: an output block starts with a line \"$ echod check ...\" and holds its output", path, i+3)
			}
			args := strings.Fields(strings.TrimPrefix(block[0], "$ echod check "))
			outputs = append(outputs, output{file: path, line: i + 2, example: m[2], args: args, lines: block[1:]})
		}
		i = j
	}
	return outputs, codes
}

// The numbers that change from run to run: how long things took, how fast,
// which byte first differed, what it was.
var (
	durations = regexp.MustCompile(`\b\d+(\.\d+)?(ns|µs|ms|s|m|h)\b`)
	hexes     = regexp.MustCompile(`\b0x[0-9a-f]+\b`)
	numbers   = regexp.MustCompile(`\d+(\.\d+)?`)
)

// normalize replaces what varies between runs with placeholders, so that
// what is compared is the words: the verdicts and the reasons.
func normalize(line string) string {
	line = durations.ReplaceAllString(line, "D")
	line = hexes.ReplaceAllString(line, "0xH")
	return numbers.ReplaceAllString(line, "N")
}

func TestGuideCodeIsTheExamples(t *testing.T) {
	_, codes := parseGuide(t, guidePath)
	_, readme := parseGuide(t, readmePath)
	codes = append(codes, readme...)
	if len(codes) == 0 {
		t.Fatalf("%s quotes no code", guidePath)
	}
	for _, c := range codes {
		src, err := os.ReadFile(filepath.Join("..", c.file))
		if err != nil {
			t.Errorf("%s quotes %s: %v", c.in, c.file, err)
			continue
		}
		if !strings.Contains(string(src), c.text) {
			t.Errorf("%s quotes from %s what it does not hold:\n%s", c.in, c.file, c.text)
		}
	}
}

// TestGuideOutputs runs each example and the real echod check against it as
// the guide does, and compares what it prints with what the guide quotes.
func TestGuideOutputs(t *testing.T) {
	outputs, _ := parseGuide(t, guidePath)
	examples, err := filepath.Glob("*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	quoted := map[string]bool{}
	for _, o := range outputs {
		quoted[o.example] = true
	}
	for _, e := range examples {
		if name := "examples/" + filepath.Dir(e); !quoted[name] {
			t.Errorf("%s quotes no echod check output for %s", guidePath, name)
		}
	}

	readme, _ := parseGuide(t, readmePath)
	outputs = append(outputs, readme...)

	bin := build(t)
	printed := make([][]string, len(outputs)) // what each command printed, by block
	t.Run("examples", func(t *testing.T) {
		for i, o := range outputs {
			t.Run(filepath.Base(o.file)+" "+filepath.Base(o.example)+" "+strings.Join(o.args, " "), func(t *testing.T) {
				t.Parallel()
				printed[i] = checkExample(t, bin, o)
			})
		}
	})
	if *update {
		for _, path := range []string{guidePath, readmePath} {
			var in []output
			var out [][]string
			for i, o := range outputs {
				if o.file == path {
					in, out = append(in, o), append(out, printed[i])
				}
			}
			rewrite(t, path, in, out)
		}
	}
}

// checkExample starts an example, runs echod check against it as the guide
// quotes, compares the two, and returns what echod check printed.
func checkExample(t *testing.T, bin string, o output) []string {
	addr := start(t, filepath.Join(bin, filepath.Base(o.example)))
	args := append([]string{"check"}, o.args...)
	found := false
	for i, a := range args {
		if a == guideAddr {
			args[i], found = addr, true
		}
	}
	if !found {
		t.Fatalf("the guide's command does not name %s: echod %s", guideAddr, strings.Join(args, " "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "echod"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // one pipe: the order a terminal shows
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimRight(strings.ReplaceAll(out.String(), addr, guideAddr), "\n"), "\n")

	// The exit status agrees with the summary the guide shows.
	if ok := err == nil; ok != strings.HasPrefix(lastVerdict(got), "PASS") {
		t.Errorf("echod check exited with %v, but its summary is %q", err, lastVerdict(got))
	}
	if *update {
		// Keep the quoted lines that differ only in numbers, so that the
		// diff shows what changed in words.
		for i := range got {
			if i < len(o.lines) && normalize(got[i]) == normalize(o.lines[i]) {
				got[i] = o.lines[i]
			}
		}
		return got
	}
	if len(got) != len(o.lines) {
		t.Errorf("echod check printed %d lines, %s:%d shows %d", len(got), o.file, o.line+1, len(o.lines))
	}
	for i := 0; i < len(got) || i < len(o.lines); i++ {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(o.lines) {
			w = o.lines[i]
		}
		if normalize(g) != normalize(w) {
			t.Errorf("line %d differs (numbers aside)\n got: %s\nwant: %s", i+1, g, w)
		}
	}
	if t.Failed() {
		t.Logf("echod check printed (go test ./examples -run GuideOutputs -update quotes it):\n%s", strings.Join(got, "\n"))
	}
	return got
}

// rewrite replaces the output quoted in each block of the guide with what
// echod check printed.
func rewrite(t *testing.T, path string, outputs []output, printed [][]string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	// From the last block to the first, so the earlier ones stay where they are.
	for i := len(outputs) - 1; i >= 0; i-- {
		if printed[i] == nil {
			t.Fatalf("not rewriting %s: block %d was not run", path, i+1)
		}
		o := outputs[i]
		first, end := o.line+1, o.line+1+len(o.lines)
		lines = append(lines[:first], append(append([]string{}, printed[i]...), lines[end:]...)...)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrote the outputs in %s", path)
}

// lastVerdict returns the summary line: the last that starts with PASS: or FAIL:.
func lastVerdict(lines []string) string {
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "PASS:") || strings.HasPrefix(lines[i], "FAIL:") {
			return lines[i]
		}
	}
	return ""
}

// build compiles echod and every example into a temporary directory, with
// the go command that runs this test, and returns the directory.
func build(t *testing.T) string {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds the examples: %v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCmd, "build", "-o", dir+string(filepath.Separator), "github.com/echod/echod/cmd/echod", "./...")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// listening is the line each example logs once it accepts connections.
var listening = regexp.MustCompile(`listening on (\S+)`)

// start runs an example program on a free loopback port until the test ends,
// and returns the address it listens on.
func start(t *testing.T, program string) string {
	t.Helper()
	if _, err := os.Stat(program); err != nil {
		t.Fatalf("the guide names an example that does not build: %v", err)
	}
	cmd := exec.Command(program, "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan string, 1)
	done := make(chan struct{})
	var log bytes.Buffer // what the example logs, for the failure message
	go func() {
		defer close(done)
		s := bufio.NewScanner(stderr)
		sent := false
		for s.Scan() {
			log.WriteString(s.Text() + "\n")
			if m := listening.FindStringSubmatch(s.Text()); m != nil && !sent {
				addrs <- m[1]
				sent = true
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done // the pipe ends with the process
		cmd.Wait()
	})
	select {
	case addr := <-addrs:
		return addr
	case <-done:
		t.Fatalf("%s exited before it listened:\n%s", program, log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not say it was listening within 30s", program)
	}
	panic("unreachable")
}
