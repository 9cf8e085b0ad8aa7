// Package testbin finds the bundled helper programs (embed/.build/bin, built by `make bundle`)
// for tests that run them as real processes, and decides what a test does when the machine
// lacks something it needs (RequireReal). Tests only; internal to appliance.
package testbin

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Path returns the program name: the file named by the environment variable env if set, else
// <repo>/embed/.build/bin/<name>. When the program is missing the test is skipped under -short
// and fails otherwise, saying how to build it.
func Path(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	root, err := RepoRoot()
	if err == nil {
		p := filepath.Join(root, "embed", ".build", "bin", name)
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	msg := name + " is not built (" + err.Error() + "): run `make bundle` or set " + env
	if testing.Short() {
		RequireReal(t, msg)
	}
	t.Fatal(msg)
	return ""
}

// RequireRealEnv names the environment variable that turns RequireReal's skips into failures.
// .ci/run sets it to 1, so a CI machine that lacks something a test needs fails loudly.
const RequireRealEnv = "GLUEBOX_REQUIRE_REAL"

// Skipper is the part of testing.TB that RequireReal uses (gittest's T has it too).
type Skipper interface {
	Helper()
	Skip(args ...any)
	Fatalf(format string, args ...any)
}

var _ Skipper = testing.TB(nil)

// RequireReal ends a test that cannot run here because the machine lacks what why names (root,
// a cgroup controller, a program): it skips, or fails when GLUEBOX_REQUIRE_REAL=1.
func RequireReal(t Skipper, why string) {
	t.Helper()
	if os.Getenv(RequireRealEnv) == "1" {
		t.Fatalf("%s=1 and this test cannot run here: %s", RequireRealEnv, why)
		return
	}
	t.Skip(why)
}

// RepoRoot walks up from the working directory to the directory holding embed/embed.go.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "embed", "embed.go")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it by
// listening on :0. For a child process that must be told its port; a server of the test's own
// keeps a listener instead.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
