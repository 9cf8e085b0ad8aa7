// Package testbin finds the bundled helper programs (embed/.build/bin, built by `make bundle`)
// for tests that run them as real processes. Tests only; internal to appliance.
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
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
