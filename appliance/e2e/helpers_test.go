package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/testnode"
)

// node wraps a testnode.Node with test-failing helpers.
type node struct {
	*testnode.Node
	t *testing.T
}

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// newNode prepares a node in its own network namespace and registers its cleanup (stop,
// `gluebox cleanup --purge`, namespace deletion), which runs even when the test fails.
func newNode(t *testing.T) *node {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		testbin.RequireReal(t, "end-to-end test: needs root to run a node")
	}
	bin := os.Getenv("GLUEBOX_BIN")
	if bin == "" {
		bin = filepath.Join(repoRoot(), "bin", "gluebox")
	}
	bin, _ = filepath.Abs(bin)
	tn, err := testnode.New(bin)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Node: tn, t: t}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(tn.Logs(20000))
		}
		if err := tn.Close(); err != nil {
			t.Errorf("node cleanup: %v", err)
		}
	})
	return n
}

// Start starts the server and fails the test if the node is not ready within 5 minutes.
func (n *node) Start(extraArgs ...string) {
	n.t.Helper()
	if err := n.Node.Start(5*time.Minute, extraArgs...); err != nil {
		n.t.Fatalf("start: %v", err)
	}
}

// Stop stops the server and fails the test if it does not stop cleanly within 2 minutes.
func (n *node) Stop() {
	n.t.Helper()
	if err := n.Node.Stop(2 * time.Minute); err != nil {
		n.t.Error(err)
	}
}

// MustKubectl runs kubectl and fails the test on error.
func (n *node) MustKubectl(args ...string) string {
	n.t.Helper()
	out, err := n.Kubectl(args...)
	if err != nil {
		n.t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return out
}

// Apply applies YAML manifests.
func (n *node) Apply(manifests string) {
	n.t.Helper()
	f := filepath.Join(n.t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte(manifests), 0o644); err != nil {
		n.t.Fatal(err)
	}
	n.MustKubectl("apply", "-f", f)
}

// ImportImage builds a testdata Go package into an image and imports it into the node.
func (n *node) ImportImage(pkg, ref string) {
	n.t.Helper()
	if err := n.Node.ImportImage(repoRoot(), pkg, ref); err != nil {
		n.t.Fatal(err)
	}
}

// Eventually polls f until it succeeds or fails the test after timeout.
func (n *node) Eventually(what string, timeout time.Duration, f func() error) {
	n.t.Helper()
	if err := testnode.Eventually(timeout, f); err != nil {
		n.t.Fatalf("%s: %v", what, err)
	}
}
