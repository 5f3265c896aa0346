package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// flagName is a flag's line in the flag package's usage: "  -name type".
var flagName = regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)

// flagRow is a row of a flag table: "| `-name ...` | default | meaning |".
var flagRow = regexp.MustCompile("(?m)^\\| `-([a-z0-9-]+)")

// TestEveryFlagIsDocumented holds each command's page in docs/ to the flags
// the command has: each has a row of its flag table, and each row is a flag.
func TestEveryFlagIsDocumented(t *testing.T) {
	bin := build(t)
	for _, command := range []string{"serve", "send", "check", "bench"} {
		t.Run(command, func(t *testing.T) {
			page := filepath.Join("..", "docs", command+".md")
			doc, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			usage, err := exec.Command(filepath.Join(bin, "echod"), command, "-h").CombinedOutput()
			if err != nil {
				t.Fatalf("echod %s -h: %v\n%s", command, err, usage)
			}
			flags := flagName.FindAllStringSubmatch(string(usage), -1)
			if len(flags) == 0 {
				t.Fatalf("echod %s -h lists no flags:\n%s", command, usage)
			}
			has := map[string]bool{}
			for _, f := range flags {
				has[f[1]] = true
			}
			rows := map[string]bool{}
			for _, r := range flagRow.FindAllStringSubmatch(string(doc), -1) {
				rows[r[1]] = true
				if !has[r[1]] {
					t.Errorf("%s has a row for -%s, which echod %s does not have", page, r[1], command)
				}
			}
			for name := range has {
				if !rows[name] {
					t.Errorf("%s has no row for -%s", page, name)
				}
			}
		})
	}
}
