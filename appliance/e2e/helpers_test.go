package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gluebox/gluebox/appliance/ociimage"
)

// node is one gluebox server under test, alone in its own network namespace.
type node struct {
	t       *testing.T
	bin     string
	dataDir string
	netns   string
	ip      string
	logPath string
	cmd     *exec.Cmd
	exited  chan error
}

// newNode prepares a network namespace and a data dir for a server and registers cleanups
// that stop it, run `gluebox cleanup --purge`, and delete the namespace, even on failure.
func newNode(t *testing.T) *node {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root to run a node")
	}
	bin := os.Getenv("GLUEBOX_BIN")
	if bin == "" {
		_, file, _, _ := runtime.Caller(0)
		bin = filepath.Join(filepath.Dir(file), "..", "..", "bin", "gluebox")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no gluebox binary at %s: run `make build` first (or set GLUEBOX_BIN)", bin)
	}
	suffix := randHex(3)
	n := &node{t: t, bin: bin, netns: "gbx-e2e-" + suffix, ip: "10.99.0.2"}
	dir, err := os.MkdirTemp("", "gbx-e2e-"+suffix+"-")
	if err != nil {
		t.Fatal(err)
	}
	n.dataDir = filepath.Join(dir, "data")
	n.logPath = filepath.Join(dir, "server.log")
	t.Cleanup(func() { os.RemoveAll(dir) })

	for _, args := range [][]string{
		{"netns", "add", n.netns},
		{"-n", n.netns, "link", "set", "lo", "up"},
		{"-n", n.netns, "link", "add", "gbx-node", "type", "veth", "peer", "name", "gbx-peer"},
		{"-n", n.netns, "addr", "add", n.ip + "/24", "dev", "gbx-node"},
		{"-n", n.netns, "link", "set", "gbx-node", "up"},
		{"-n", n.netns, "link", "set", "gbx-peer", "up"},
		{"-n", n.netns, "route", "add", "default", "via", "10.99.0.1", "dev", "gbx-node"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		if args[0] == "netns" {
			t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.netns).Run() })
		}
	}
	t.Cleanup(func() {
		n.Stop()
		if out, err := n.inNetns(2*time.Minute, n.bin, "cleanup", "--data-dir", n.dataDir, "--purge"); err != nil {
			t.Errorf("gluebox cleanup: %v\n%s", err, out)
		}
		if t.Failed() {
			n.dumpLogs()
		}
	})
	return n
}

// Start starts `gluebox server` and waits until it reports the node ready.
func (n *node) Start(extraArgs ...string) {
	n.t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	args := append([]string{"--net=/run/netns/" + n.netns, n.bin, "server",
		"--data-dir", n.dataDir, "--node-ip", n.ip, "--node-name", "e2e-node",
		"--http-addr", "127.0.0.1:18080", "--https-addr", "127.0.0.1:18443", "--config", "/dev/null"}, extraArgs...)
	n.cmd = exec.Command("nsenter", args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan error, 1)
	go func() { n.exited <- n.cmd.Wait(); logf.Close() }()
	n.Eventually("node ready", 5*time.Minute, func() error {
		select {
		case err := <-n.exited:
			n.exited <- err
			return fmt.Errorf("gluebox server exited: %v", err)
		default:
		}
		var st struct{ Phase string }
		out, err := n.Gluebox("status", "--json")
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		if st.Phase != "ready" {
			return fmt.Errorf("phase %s", st.Phase)
		}
		return nil
	})
}

// Stop sends SIGTERM to the server and waits (bounded) for it to exit; it is a no-op when the
// server is not running.
func (n *node) Stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(2 * time.Minute):
		n.t.Errorf("gluebox server did not stop within 2m after SIGTERM; killing it")
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
	}
	n.cmd = nil
}

// Gluebox runs a gluebox CLI command against this node.
func (n *node) Gluebox(args ...string) (string, error) {
	return n.inNetns(time.Minute, n.bin, args...)
}

// Kubectl runs the embedded kubectl against this node.
func (n *node) Kubectl(args ...string) (string, error) {
	return n.inNetns(2*time.Minute, n.bin, append([]string{"kubectl", "--kubeconfig", filepath.Join(n.dataDir, "kubeconfig", "admin.yaml")}, args...)...)
}

// MustKubectl is Kubectl that fails the test on error.
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

// Curl fetches url from inside the node's network namespace.
func (n *node) Curl(url string) (string, error) {
	return n.inNetns(30*time.Second, "curl", "-sS", "--fail", "--max-time", "5", url)
}

// ImportImage builds a single-binary image from a Go package under testdata and imports it.
func (n *node) ImportImage(pkg, ref string) {
	n.t.Helper()
	dir := n.t.TempDir()
	bin := filepath.Join(dir, "app")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	build := exec.Command("go", "build", "-o", bin, "./"+pkg)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		n.t.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	tar := filepath.Join(dir, "image.tar")
	if err := ociimage.WriteSingleBinary(tar, bin, ref, "/app"); err != nil {
		n.t.Fatal(err)
	}
	if out, err := n.Gluebox("ctr", "images", "import", tar); err != nil {
		n.t.Fatalf("import %s: %v\n%s", ref, err, out)
	}
}

// Eventually polls f until it returns nil or timeout passes, then fails with f's last error.
func (n *node) Eventually(what string, timeout time.Duration, f func() error) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: not true within %s: %v", what, timeout, err)
		}
		time.Sleep(time.Second)
	}
}

func (n *node) inNetns(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + n.netns, name}, args...)...)
	cmd.Env = append(os.Environ(), "GLUEBOX_DATA_DIR="+n.dataDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func (n *node) dumpLogs() {
	for _, f := range []string{n.logPath, filepath.Join(n.dataDir, "logs", "containerd.log"), filepath.Join(n.dataDir, "logs", "coredns.log")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(b) > 20000 {
			b = b[len(b)-20000:]
		}
		n.t.Logf("==== %s (tail) ====\n%s", f, b)
	}
	if b, err := os.ReadFile(filepath.Join(n.dataDir, "logs", "kubernetes.log")); err == nil {
		lines := strings.Split(string(b), "\n")
		var errs []string
		for _, l := range lines {
			if strings.HasPrefix(l, "E") {
				errs = append(errs, l)
			}
		}
		if len(errs) > 60 {
			errs = errs[len(errs)-60:]
		}
		n.t.Logf("==== kubernetes.log errors (last 60) ====\n%s", strings.Join(errs, "\n"))
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
