// Package testnode starts real gluebox servers for end-to-end tests and benchmarks: each node
// runs the built binary in its own network namespace (a veth pair holds the node address), so
// its iptables rules, bridge and ports never touch the host's and its traffic stays inside the
// namespace. Only appliance/e2e and bench import it; it needs root.
package testnode

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gluebox/gluebox/appliance/ociimage"
)

// NodeIP is the node's address inside its namespace.
const NodeIP = "10.99.0.2"

// Node is one gluebox server in its own network namespace.
type Node struct {
	Bin     string
	DataDir string
	NetNS   string
	LogPath string
	// Root is the temporary directory holding DataDir and LogPath.
	Root string

	cmd    *exec.Cmd
	exited chan error
}

// New creates the namespace and a temporary data dir. Call Close to undo everything.
func New(bin string) (*Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a test node needs root")
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no gluebox binary at %s: run `make build` first", bin)
	}
	suffix := randHex(3)
	root, err := os.MkdirTemp("", "gbx-node-"+suffix+"-")
	if err != nil {
		return nil, err
	}
	n := &Node{Bin: bin, NetNS: "gbx-" + suffix, Root: root, DataDir: filepath.Join(root, "data"), LogPath: filepath.Join(root, "server.log")}
	for _, args := range [][]string{
		{"netns", "add", n.NetNS},
		{"-n", n.NetNS, "link", "set", "lo", "up"},
		{"-n", n.NetNS, "link", "add", "gbx-node", "type", "veth", "peer", "name", "gbx-peer"},
		{"-n", n.NetNS, "addr", "add", NodeIP + "/24", "dev", "gbx-node"},
		{"-n", n.NetNS, "link", "set", "gbx-node", "up"},
		{"-n", n.NetNS, "link", "set", "gbx-peer", "up"},
		{"-n", n.NetNS, "route", "add", "default", "via", "10.99.0.1", "dev", "gbx-node"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			n.Close()
			return nil, fmt.Errorf("ip %v: %v: %s", args, err, out)
		}
	}
	return n, nil
}

// Start starts `gluebox server` and waits until it reports the node ready or timeout passes.
func (n *Node) Start(timeout time.Duration, extraArgs ...string) error {
	logf, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"--net=/run/netns/" + n.NetNS, n.Bin, "server",
		"--data-dir", n.DataDir, "--node-ip", NodeIP, "--node-name", "test-node",
		"--http-addr", "127.0.0.1:18080", "--https-addr", "127.0.0.1:18443", "--config", "/dev/null"}, extraArgs...)
	n.cmd = exec.Command("nsenter", args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := n.cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	n.exited = make(chan error, 1)
	go func() { n.exited <- n.cmd.Wait(); logf.Close() }()
	return Eventually(timeout, func() error {
		select {
		case err := <-n.exited:
			n.exited <- err
			return Permanent(fmt.Errorf("gluebox server exited: %v (log: %s)", err, n.LogPath))
		default:
		}
		phase, err := n.Phase()
		if err != nil {
			return err
		}
		if phase != "ready" {
			return fmt.Errorf("phase %s", phase)
		}
		return nil
	})
}

// Phase returns the server's phase from `gluebox status --json`.
func (n *Node) Phase() (string, error) {
	out, err := n.Gluebox("status", "--json")
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	var st struct{ Phase string }
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return "", err
	}
	return st.Phase, nil
}

// PID returns the server's process id, or 0 when it is not running.
func (n *Node) PID() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Stop sends SIGTERM and waits up to timeout for the server to exit, then kills it.
func (n *Node) Stop(timeout time.Duration) error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	defer func() { n.cmd = nil }()
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
		return nil
	case <-time.After(timeout):
		_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
		<-n.exited
		return fmt.Errorf("gluebox server did not stop within %s after SIGTERM", timeout)
	}
}

// Close stops the server, runs `gluebox cleanup --purge`, deletes the namespace and the
// temporary directory. It is safe to call more than once.
func (n *Node) Close() error {
	var errs []error
	if err := n.Stop(2 * time.Minute); err != nil {
		errs = append(errs, err)
	}
	if _, err := os.Stat(n.DataDir); err == nil {
		if out, err := n.Run(2*time.Minute, n.Bin, "cleanup", "--data-dir", n.DataDir, "--purge"); err != nil {
			errs = append(errs, fmt.Errorf("gluebox cleanup: %v: %s", err, out))
		}
	}
	_ = exec.Command("ip", "netns", "del", n.NetNS).Run()
	if err := os.RemoveAll(n.Root); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Gluebox runs a gluebox CLI command against this node.
func (n *Node) Gluebox(args ...string) (string, error) {
	return n.Run(time.Minute, n.Bin, args...)
}

// Kubectl runs the embedded kubectl against this node.
func (n *Node) Kubectl(args ...string) (string, error) {
	return n.Run(3*time.Minute, n.Bin, append([]string{"kubectl", "--kubeconfig", filepath.Join(n.DataDir, "kubeconfig", "admin.yaml")}, args...)...)
}

// Curl runs curl with args (a URL and any options) inside the node's network namespace; it
// fails on HTTP errors.
func (n *Node) Curl(args ...string) (string, error) {
	return n.Run(30*time.Second, "curl", append([]string{"-sS", "--fail", "--max-time", "5"}, args...)...)
}

// Run runs a program inside the node's network namespace with GLUEBOX_DATA_DIR set and returns
// its combined output.
func (n *Node) Run(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + n.NetNS, name}, args...)...)
	cmd.Env = append(os.Environ(), "GLUEBOX_DATA_DIR="+n.DataDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

// ImportImage builds the Go package pkg (relative to the repository root repo) as a static
// binary, wraps it in a single-binary image named ref and imports it into the node.
func (n *Node) ImportImage(repo, pkg, ref string) error {
	dir, err := os.MkdirTemp(n.Root, "image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "app")
	build := exec.Command("go", "build", "-o", bin, "./"+pkg)
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	tar := filepath.Join(dir, "image.tar")
	if err := ociimage.WriteSingleBinary(tar, bin, ref, "/app"); err != nil {
		return err
	}
	if out, err := n.Gluebox("ctr", "images", "import", tar); err != nil {
		return fmt.Errorf("import %s: %v\n%s", ref, err, out)
	}
	return nil
}

// Memory is the resident memory of a node's processes, split by kind: anonymous memory (heaps,
// stacks) and file-backed pages (mostly the programs' own code, which the kernel can drop and
// read back).
type Memory struct {
	RSS, Anon, File int64
}

// Memory sums the resident memory of the server and every process started from its data dir
// (containerd, shims, CoreDNS, the observability children).
func (n *Node) Memory() (Memory, error) {
	var m Memory
	if n.PID() == 0 {
		return m, errors.New("server not running")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return m, err
	}
	prefix := n.DataDir + "/"
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		mine := strings.HasPrefix(exe, prefix) // containerd, shims, coredns
		if exe == n.Bin || strings.HasSuffix(exe, "/gluebox") {
			mine = mine || strings.Contains(string(cmdline), n.DataDir) && strings.Contains(string(cmdline), "server")
		}
		if !mine {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "VmRSS:":
				m.RSS += kb << 10
			case "RssAnon:":
				m.Anon += kb << 10
			case "RssFile:":
				m.File += kb << 10
			}
		}
	}
	return m, nil
}

// permanent marks an error that Eventually must not retry.
type permanent struct{ error }

// Permanent wraps err so Eventually stops at once.
func Permanent(err error) error { return permanent{err} }

// Eventually polls f every 500ms until it returns nil, returns a Permanent error, or timeout
// passes; it returns f's last error.
func Eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s: %w", timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Logs returns the tail of the server's log and of its children's logs, for failure reports.
func (n *Node) Logs(maxBytes int) string {
	var sb strings.Builder
	for _, f := range []string{n.LogPath, filepath.Join(n.DataDir, "logs", "containerd.log"), filepath.Join(n.DataDir, "logs", "coredns.log")} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(b) > maxBytes {
			b = b[len(b)-maxBytes:]
		}
		fmt.Fprintf(&sb, "==== %s (tail) ====\n%s\n", f, b)
	}
	if b, err := os.ReadFile(filepath.Join(n.DataDir, "logs", "kubernetes.log")); err == nil {
		var errs []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "E") || strings.HasPrefix(l, "F") {
				errs = append(errs, l)
			}
		}
		if len(errs) > 80 {
			errs = errs[len(errs)-80:]
		}
		fmt.Fprintf(&sb, "==== kubernetes.log errors (last 80) ====\n%s\n", strings.Join(errs, "\n"))
	}
	return sb.String()
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ImportBusybox imports a base image made from the host's static busybox (Debian's
// busybox-static, /bin/busybox) as docker.io/library/busybox:latest with `gluebox image
// import`, so Dockerfiles saying `FROM busybox` build offline through the built-in registry.
func (n *Node) ImportBusybox() error {
	img, err := ociimage.Busybox("/bin/busybox", "sh", "cat", "echo", "mkdir", "uname", "httpd", "sleep", "ls")
	if err != nil {
		return fmt.Errorf("busybox base image (apt-get install busybox-static): %w", err)
	}
	file := filepath.Join(n.Root, "busybox.tar")
	defer os.Remove(file)
	if err := ociimage.WriteTarball(file, "busybox:latest", img); err != nil {
		return err
	}
	if out, err := n.Gluebox("image", "import", file); err != nil || !strings.Contains(out, "library/busybox:latest@sha256:") {
		return fmt.Errorf("image import: %v\n%s", err, out)
	}
	return nil
}
