// Package tooltest finds the third-party programs that some tests drive. A
// missing program skips the test, unless ECHOD_REQUIRE_TOOLS=1 says that it
// was installed and must be used.
package tooltest

import (
	"os"
	"os/exec"
	"testing"
)

// Require returns the path of the program name, or ends the test: skipped
// when the program is missing, failed when ECHOD_REQUIRE_TOOLS=1.
func Require(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("ECHOD_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s is required (ECHOD_REQUIRE_TOOLS=1) but not found: %v", name, err)
	}
	t.Skipf("%s not found; install it to run this test", name)
	return ""
}
