// Package examples holds the servers of docs/learn.md, one program per
// directory. Its tests hold the docs to the code: they run the real echod
// check against each example as docs/learn.md and the README quote it, and
// check that docs/ has a row for every flag of every command.
package examples

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// update rewrites the quoted outputs with what echod check prints now:
// go test ./examples -run GuideOutputs -update, then read the diff.
var update = flag.Bool("update", false, "rewrite the outputs quoted in "+guidePath+" and "+readmePath)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The guide for learners, and the README, which quotes outputs too.
const (
	guidePath  = "../docs/learn.md"
	readmePath = "../README.md"
)

// guideAddr is the address the quoted commands use: the examples' default.
const guideAddr = "127.0.0.1:7008"

// An output is a block that quotes a command and what it printed.
type output struct {
	file    string   // the guide or the README
	line    int      // the index of the block's first line, the command, in file
	example string   // examples/NAME, the server the command ran against
	args    []string // after "echod check"
	lines   []string // what it printed
	// alts are other lines the command may print in place of a quoted
	// one, for the same check: reasons that depend on how the server's
	// reads happened to split what was sent.
	alts []string
}

// key identifies the command run: blocks that quote the same one share a run.
func (o output) key() string { return o.example + " " + strings.Join(o.args, " ") }

// A code block is a listing quoted from a file.
type code struct {
	in   string // the guide or the README
	file string
	text string
}

// Each quoted block is marked with an HTML comment, invisible on the page,
// that names where it comes from:
//
//	<!-- output: examples/lines -->       $ echod check ... and its output
//	<!-- code: examples/echo/main.go -->  part of that file, verbatim
//
// Right after an output block, lines like
//
//	<!-- or: FAIL resets: byte 0 differs: got 0x00 want 0x73 -->
//
// name what a run may print instead of the quoted line for the same check.
var (
	marker    = regexp.MustCompile(`^<!-- (output|code): (\S+) -->$`)
	altMarker = regexp.MustCompile(`^<!-- or: (.*) -->$`)
)

// parseGuide returns the marked blocks of a Markdown file.
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
			args, err := shellWords(strings.TrimPrefix(block[0], "$ echod check "))
			if err != nil {
				t.Fatalf("%s:%d: %v", path, i+3, err)
			}
			o := output{file: path, line: i + 2, example: m[2], args: args, lines: block[1:]}
			for ; j+1 < len(lines); j++ {
				alt := altMarker.FindStringSubmatch(lines[j+1])
				if alt == nil {
					break
				}
				o.alts = append(o.alts, alt[1])
			}
			outputs = append(outputs, o)
		}
		i = j
	}
	return outputs, codes
}

// shellWords splits a command line as a shell would, for the little that
// the quoted commands use: words, and words in single quotes.
func shellWords(line string) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '\'':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, word.String())
				word.Reset()
			}
			inWord = false
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unclosed quote in %q", line)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
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

// dumpLine is a line of a hex dump under a FAIL line: "  got  00000000 ...",
// "  want 00000000 ...", or a continuation with the label left blank.
var dumpLine = regexp.MustCompile(`^ +(got|want)? +[0-9a-f]{8} `)

// An entry is what of one line of output is compared: the line with its
// numbers normalized, and whether a hex dump follows it. The dump itself is
// left out, because the bytes around a difference, and so its length, may
// change from run to run.
type entry struct {
	line string
	dump bool
}

// comparable returns the entries of an output.
func comparable(lines []string) []entry {
	var out []entry
	for _, l := range lines {
		if dumpLine.MatchString(l) {
			if len(out) > 0 {
				out[len(out)-1].dump = true
			}
			continue
		}
		out = append(out, entry{line: normalize(l)})
	}
	return out
}

// checkName returns the check a verdict line is about: "FAIL name: ...",
// "PASS name (...)".
func checkName(line string) string {
	f := strings.Fields(strings.NewReplacer(":", " ", "(", " ").Replace(line))
	if len(f) < 2 {
		return ""
	}
	return f[0] + " " + f[1]
}

// matches reports whether a printed entry is the quoted one, or one of the
// alternatives for the same check.
func matches(got, want entry, alts []string) bool {
	if got == want {
		return true
	}
	for _, a := range alts {
		if normalize(a) == got.line && checkName(got.line) == checkName(want.line) {
			return true
		}
	}
	return false
}

func TestNormalize(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"PASS: 11 checks passed (910ms)", "PASS: 3 checks passed (1.2s)"},
		{"FAIL large: byte 0 differs: got 0x00 want 0x85", "FAIL large: byte 27057 differs: got 0x0a want 0xd"},
	} {
		if normalize(tt.a) != normalize(tt.b) {
			t.Errorf("%q and %q differ only in numbers, but normalize tells them apart", tt.a, tt.b)
		}
	}
	dump1 := []string{"FAIL large: byte 0 differs", "  got  00000000 [00]00 00  |...|", "       00000010  00  |.|", "  want 00000000 [85]ab  |..|", "PASS empty (EOF)"}
	dump2 := []string{"FAIL large: byte 9 differs", "  got  00000000 [01]00 00  |...|", "  want 00000000 [86]ab  |..|", "       00000010  01  |.|", "PASS empty (EOF)"}
	if a, b := comparable(dump1), comparable(dump2); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("two dumps of different bytes and lengths compare unequal:\n%v\n%v", a, b)
	}
	if a, b := comparable(dump1), comparable([]string{"FAIL large: byte 0 differs", "PASS empty (EOF)"}); fmt.Sprint(a) == fmt.Sprint(b) {
		t.Errorf("a line with a dump and one without compare equal: %v", a)
	}
	got, want := entry{line: normalize("FAIL resets: byte 0 differs")}, entry{line: normalize("FAIL resets: reply starts with 4096 zero bytes")}
	if !matches(got, want, []string{"FAIL resets: byte 0 differs"}) {
		t.Error("an alternative for the same check does not match")
	}
	if matches(got, want, nil) || matches(got, want, []string{"FAIL smoke: byte 0 differs"}) {
		t.Error("a line matches without an alternative for its check")
	}
	for _, tt := range []struct{ a, b string }{
		{"PASS: 11 checks passed", "FAIL: 11 checks failed"},
		{"the server buffers until EOF", "the server buffers until a newline"},
		{"within 5s", "within 5"},
	} {
		if normalize(tt.a) == normalize(tt.b) {
			t.Errorf("%q and %q differ in words, but normalize makes them one", tt.a, tt.b)
		}
	}
}

func TestShellWords(t *testing.T) {
	got, err := shellWords("-run 'text|streaming'  127.0.0.1:7008 ''")
	want := []string{"-run", "text|streaming", "127.0.0.1:7008", ""}
	if err != nil || strings.Join(got, ",") != strings.Join(want, ",") || len(got) != len(want) {
		t.Errorf("shellWords = %q, %v; want %q", got, err, want)
	}
	if _, err := shellWords("-run 'text"); err == nil {
		t.Error("shellWords accepts an unclosed quote")
	}
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

// A run is one quoted command, run for real.
type run struct {
	lines []string // what it printed, the address replaced by guideAddr
	ok    bool     // it exited with status 0
	err   error    // it could not be run at all
}

// TestGuideOutputs runs each example and the real echod check against it as
// the guide and the README quote it, and compares what it prints with the
// quote.
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

	// The checks of a broken server mostly wait for echoes that never come,
	// so all the commands run at once, each against its own example.
	bin := build(t)
	runs := map[string]*run{}
	var wg sync.WaitGroup
	for _, o := range outputs {
		if runs[o.key()] != nil {
			continue
		}
		r := &run{}
		runs[o.key()] = r
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.lines, r.ok, r.err = runCheck(bin, o.example, o.args)
		}()
	}
	wg.Wait()

	printed := make([][]string, len(outputs))
	for i, o := range outputs {
		t.Run(filepath.Base(o.file)+" "+o.key(), func(t *testing.T) {
			r := runs[o.key()]
			if r.err != nil {
				t.Fatal(r.err)
			}
			printed[i] = compare(t, o, r)
		})
	}
	if *update {
		rewrite(t, guidePath, outputs, printed)
		rewrite(t, readmePath, outputs, printed)
	}
}

// runCheck starts an example on a free loopback port, runs echod check with
// args against it, stops the example, and returns what echod check printed.
func runCheck(bin, example string, args []string) (lines []string, ok bool, err error) {
	addr, stop, err := start(filepath.Join(bin, filepath.Base(example)))
	if err != nil {
		return nil, false, err
	}
	defer stop()
	args = append([]string{"check"}, args...)
	found := false
	for i, a := range args {
		if a == guideAddr {
			args[i], found = addr, true
		}
	}
	if !found {
		return nil, false, fmt.Errorf("the quoted command does not name %s: echod %s", guideAddr, strings.Join(args, " "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "echod"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out // one pipe: the order a terminal shows
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return nil, false, fmt.Errorf("echod %s: %w", strings.Join(args, " "), err)
	}
	text := strings.ReplaceAll(strings.TrimRight(out.String(), "\n"), addr, guideAddr)
	return strings.Split(text, "\n"), err == nil, nil
}

// compare holds a quoted output to what the command printed, and returns
// the lines to quote: the quote itself if it differs only in numbers.
func compare(t *testing.T, o output, r *run) []string {
	// The exit status agrees with the summary.
	if summary := lastVerdict(r.lines); r.ok != strings.HasPrefix(summary, "PASS") {
		t.Errorf("echod check exited with status 0: %v, but its summary is %q", r.ok, summary)
	}
	got, want := comparable(r.lines), comparable(o.lines)
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = matches(got[i], want[i], o.alts)
	}
	if same {
		return o.lines
	}
	if *update {
		return r.lines
	}
	t.Errorf("%s:%d quotes what echod check no longer prints (numbers and hex dumps aside)", o.file, o.line+1)
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w entry
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if !matches(g, w, o.alts) {
			t.Errorf("first difference:\n got: %s (hex dump after it: %v)\nwant: %s (hex dump after it: %v)", g.line, g.dump, w.line, w.dump)
			break
		}
	}
	t.Logf("echod check printed (go test ./examples -run GuideOutputs -update quotes it):\n%s", strings.Join(r.lines, "\n"))
	return r.lines
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

// rewrite replaces the output quoted in each block of path with the lines
// printed for it.
func rewrite(t *testing.T, path string, outputs []output, printed [][]string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	// From the last block to the first, so the earlier ones stay where they are.
	for i := len(outputs) - 1; i >= 0; i-- {
		o := outputs[i]
		if o.file != path {
			continue
		}
		if printed[i] == nil {
			t.Fatalf("not rewriting %s: the block at line %d was not run", path, o.line+1)
		}
		first, end := o.line+1, o.line+1+len(o.lines)
		lines = append(lines[:first], append(append([]string{}, printed[i]...), lines[end:]...)...)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("rewrote the outputs quoted in %s", path)
}

// build compiles echod and every example into a temporary directory, with
// the go command on PATH, and returns the directory.
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

// start runs an example program on a free loopback port, and returns the
// address it listens on and a func that stops it.
func start(program string) (addr string, stop func(), err error) {
	cmd := exec.Command(program, "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	addrs := make(chan string, 1)
	done := make(chan struct{})
	var log bytes.Buffer // what the example logs, for an error
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
	stop = func() {
		cmd.Process.Kill()
		<-done // the pipe ends with the process
		cmd.Wait()
	}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case addr := <-addrs:
		return addr, stop, nil
	case <-done:
		stop()
		return "", nil, fmt.Errorf("%s exited before it listened:\n%s", program, log.String())
	case <-timer.C:
		stop()
		return "", nil, fmt.Errorf("%s did not say it was listening within 30s", program)
	}
}
