package deploy

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// invocations returns every echod command line the deployment files hold,
// by where it comes from, without the program name.
func invocations(t *testing.T) map[string][]string {
	t.Helper()
	found := map[string][]string{}

	for _, o := range loadManifests(t) {
		if d, ok := o.(*appsv1.Deployment); ok {
			found["kubernetes/deployment.yaml"] = d.Spec.Template.Spec.Containers[0].Args
		}
	}

	found["kubernetes/bench-job.yaml"] = benchJobArgs(t)

	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^CMD (\[.*\])$`).FindSubmatch(dockerfile); m != nil {
		var args []string
		if err := json.Unmarshal(m[1], &args); err != nil {
			t.Fatalf("Dockerfile CMD: %v", err)
		}
		found["Dockerfile CMD"] = args
	}

	fly, err := os.ReadFile(filepath.Join("fly", "fly.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(?m)^[ \t]+app = "(.*)"`).FindSubmatch(fly); m != nil {
		found["fly/fly.toml [processes] app"] = strings.Fields(string(m[1]))
	}

	unit, err := os.Open(filepath.Join("systemd", "echod.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer unit.Close()
	lines := bufio.NewScanner(unit)
	for lines.Scan() {
		if rest, ok := strings.CutPrefix(lines.Text(), "ExecStart=/usr/local/bin/echod "); ok {
			found["systemd/echod.service ExecStart"] = strings.Fields(rest)
		}
	}

	for _, where := range []string{"kubernetes/deployment.yaml", "kubernetes/bench-job.yaml", "Dockerfile CMD", "fly/fly.toml [processes] app", "systemd/echod.service ExecStart"} {
		if len(found[where]) == 0 {
			t.Errorf("found no echod command line in %s", where)
		}
	}
	return found
}

// Every echod command line in the deployment files must parse: a renamed
// or misspelt flag, or a bad value, fails here rather than in production.
func TestEchodCommandLinesParse(t *testing.T) {
	found := invocations(t)
	echod := filepath.Join(t.TempDir(), "echod")
	build := exec.Command("go", "build", "-o", echod, "./cmd/echod")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building echod: %v\n%s", err, out)
	}
	for where, args := range found {
		// -h after the flags: echod parses and checks each flag before
		// it, then prints its usage and exits 0 instead of serving.
		cmd := exec.Command(echod, append(args, "-h")...)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Usage:") {
			t.Errorf("%s: echod %s: %v\n%s", where, strings.Join(args, " "), err, out)
		}
	}
}
