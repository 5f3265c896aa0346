package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// No Docker engine runs in CI, so this test checks what it can of the
// Dockerfile without one: its build command, run as written, makes a static
// binary, and the image it describes runs that binary unprivileged and
// exposes the port it serves on for TCP and UDP.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)

	build := regexp.MustCompile(`(?m)^RUN (CGO_ENABLED=0 go build .*) -o /out/echod (\./cmd/echod)$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no 'RUN CGO_ENABLED=0 go build ... -o /out/echod ./cmd/echod' line")
	}
	// The shell runs the line as docker would, with the output moved to a
	// temporary directory.
	out := filepath.Join(t.TempDir(), "echod")
	cmd := exec.Command("sh", "-c", build[1]+" -o "+out+" "+build[2])
	cmd.Dir = ".."
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd.Args[2], err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary needs a dynamic loader; the scratch image has none")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary links %v; the scratch image has none", libs)
	}

	stages := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) != 2 || stages[1][1] != "scratch" {
		t.Errorf("want a build stage and a final stage FROM scratch, have %v", stages)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(df)
	if user == nil || user[1] == "0" || user[2] == "0" {
		t.Errorf("want a numeric non-root USER (scratch has no /etc/passwd), have %v", user)
	}
	exposed := strings.Fields(regexp.MustCompile(`(?m)^EXPOSE (.*)$`).FindStringSubmatch(df)[1])
	for _, want := range []string{"7007/tcp", "7007/udp"} {
		if !slices.Contains(exposed, want) {
			t.Errorf("EXPOSE %v lacks %s", exposed, want)
		}
	}
	if !strings.Contains(df, `CMD ["serve", "-listen", ":7007"]`) {
		t.Error(`want CMD ["serve", "-listen", ":7007"], the port EXPOSE names`)
	}
}
