package imagebuild

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/gluebox/gluebox/appliance/internal/testbin"
	"github.com/gluebox/gluebox/appliance/ociimage"
	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// realEnv is a containerd, a registry and a buildkitd on the containerd, all real, all under
// one temporary directory.
type realEnv struct {
	t        *testing.T
	root     string // temp dir holding everything
	binDir   string
	bkBin    string
	regAddr  string
	ctrSock  string
	daemon   *Daemon
	stopBK   func()
	log      *slog.Logger
	busybox  string
	ctrState string
}

// realBinaries finds what the real-process test runs, or skips the test saying what is missing.
func realBinaries(t *testing.T) (binDir, buildkitd, busybox string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testbin.RequireReal(t, "real BuildKit builds need root (containerd, runc and buildkitd run as root)")
	}
	root, err := testbin.RepoRoot()
	if err != nil {
		testbin.RequireReal(t, "cannot find the repository root: "+err.Error())
	}
	binDir = filepath.Join(root, "embed", ".build", "bin")
	var missing []string
	for _, p := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := os.Stat(filepath.Join(binDir, p)); err != nil {
			missing = append(missing, filepath.Join(binDir, p))
		}
	}
	buildkitd = os.Getenv("GLUEBOX_TEST_BUILDKITD")
	if buildkitd == "" {
		buildkitd = filepath.Join(binDir, "buildkitd")
	}
	if _, err := os.Stat(buildkitd); err != nil {
		missing = append(missing, buildkitd+" (gluebox's buildkitd from embed/buildkit, see embed/buildkit/tools.go; or set GLUEBOX_TEST_BUILDKITD)")
	}
	busybox = os.Getenv("GLUEBOX_TEST_BUSYBOX")
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	if _, err := os.Stat(busybox); err != nil {
		missing = append(missing, busybox+" (a static busybox for the base image: apt-get install busybox-static, or set GLUEBOX_TEST_BUSYBOX)")
	}
	if len(missing) > 0 {
		testbin.RequireReal(t, "missing for the real build test (run `make bundle`): "+strings.Join(missing, "; "))
	}
	return binDir, buildkitd, busybox
}

var routeRegistryLogs sync.Once

// newRealEnv starts containerd and the registry; startBuildkitd starts buildkitd. Everything
// is stopped, unmounted and removed by t.Cleanup, also when the test fails half-way.
func newRealEnv(t *testing.T) *realEnv {
	binDir, bkBin, busybox := realBinaries(t)
	root, err := os.MkdirTemp("", "gbx-build-") // short: unix socket paths live under it
	if err != nil {
		t.Fatal(err)
	}
	e := &realEnv{t: t, root: root, binDir: binDir, bkBin: bkBin, busybox: busybox, log: testLog(t)}
	t.Cleanup(e.cleanup) // runs last: after everything below has stopped
	routeRegistryLogs.Do(func() { registry.RouteDistributionLogs(slog.New(slog.DiscardHandler)) })

	// The registry, in-process on a free loopback port.
	reg, err := registry.New(registry.Config{Dir: filepath.Join(root, "registry"), Addr: "127.0.0.1:0", GCInterval: -1}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	regCtx, stopReg := context.WithCancel(context.Background())
	regDone := make(chan error, 1)
	go func() { regDone <- reg.Run(regCtx) }()
	t.Cleanup(func() { stopReg(); <-regDone; reg.Close() })
	regReady := make(chan error, 1)
	go func() { regReady <- reg.WaitReady(regCtx) }()
	select {
	case err := <-regReady:
		if err != nil {
			t.Fatalf("registry not ready: %v", err)
		}
	case err := <-regDone:
		t.Fatalf("registry: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("registry not ready")
	}
	e.regAddr = reg.Addr()

	// containerd with just what BuildKit's containerd worker needs (no CRI).
	e.ctrState = filepath.Join(root, "containerd", "state")
	e.ctrSock = filepath.Join(e.ctrState, "containerd.sock")
	conf := filepath.Join(root, "containerd", "config.toml")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	confText := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
[grpc]
  address = %q
[ttrpc]
  address = "%s.ttrpc"
`, filepath.Join(root, "containerd", "root"), e.ctrState, e.ctrSock, e.ctrSock)
	if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
		t.Fatal(err)
	}
	ctr := supervise.NewChild(supervise.ChildConfig{
		Name:    "containerd",
		Path:    filepath.Join(binDir, "containerd"),
		Args:    []string{"--config", conf},
		Env:     []string{"PATH=" + binDir + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		LogFile: filepath.Join(root, "containerd.log"),
		Ready: func(ctx context.Context) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", e.ctrSock)
			if err != nil {
				return err
			}
			return c.Close()
		},
		MaxRestarts: 1,
	}, e.log)
	e.runChild(t, "containerd", ctr, filepath.Join(root, "containerd.log"))
	return e
}

// runChild runs c until the test ends and waits for it to be ready.
func (e *realEnv) runChild(t *testing.T, name string, c *supervise.Child, logFile string) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-c.Ready():
	case err := <-done:
		t.Fatalf("%s stopped before it was ready: %v\n%s", name, err, tail(logFile))
	case <-time.After(90 * time.Second):
		t.Fatalf("%s not ready in 90s\n%s", name, tail(logFile))
	}
	return stop
}

// startBuildkitd (re)starts buildkitd on the same directory.
func (e *realEnv) startBuildkitd(t *testing.T) {
	t.Helper()
	d, err := NewDaemon(Config{
		Bin:              e.bkBin,
		Dir:              filepath.Join(e.root, "buildkit"),
		ContainerdSocket: e.ctrSock,
		Runc:             filepath.Join(e.binDir, "runc"),
		Registry:         e.regAddr,
		// Docker Hub is not mirrored here: a miss would go to the internet.
		Mirrored: []string{},
		Debug:    testing.Verbose(),
	}, e.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	e.stopBK = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("buildkitd: %v", err)
			}
		})
	}
	e.t.Cleanup(e.stopBK) // the whole test's, not a subtest's
	rctx, rcancel := context.WithTimeout(ctx, 90*time.Second)
	defer rcancel()
	if err := d.WaitReady(rctx); err != nil {
		t.Fatalf("buildkitd not ready: %v\n%s", err, tail(filepath.Join(e.root, "buildkit", "buildkitd.log")))
	}
	e.daemon = d
}

// cleanup kills what containerd left running (shims and their containers), unmounts anything
// under the temp dir and removes it.
func (e *realEnv) cleanup() {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(e.root)) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil && pid != os.Getpid() {
			e.t.Logf("killing leftover process %d: %s", pid, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		lines := strings.Split(string(mi), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			f := strings.Fields(lines[i])
			if len(f) > 4 && strings.HasPrefix(f[4], e.root) {
				if err := syscall.Unmount(f[4], syscall.MNT_DETACH); err != nil {
					e.t.Logf("unmount %s: %v", f[4], err)
				}
			}
		}
	}
	if err := os.RemoveAll(e.root); err != nil {
		e.t.Errorf("cannot remove %s: %v", e.root, err)
	}
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return "--- " + path + " ---\n" + string(b)
}

// pushBase pushes a busybox image (busybox plus the symlinks RUN steps use) as ref.
func (e *realEnv) pushBase(t *testing.T, ref string) {
	t.Helper()
	img, err := ociimage.Busybox(e.busybox, "sh", "cat", "echo", "mkdir", "sleep", "ls", "uname", "wc")
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push base image: %v", err)
	}
}

// fileInImage returns the content of path in the pushed image ref.
func fileInImage(t *testing.T, ref, path string) (string, v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in %s: %v", path, ref, err)
		}
		if strings.TrimPrefix(h.Name, "./") == strings.TrimPrefix(path, "/") {
			b, _ := io.ReadAll(tr)
			return string(b), img
		}
	}
}

const testDockerfile = `# syntax=docker/dockerfile:1
FROM registry.gluebox.local/base/busybox:1 AS build
ARG GREETING=hello
RUN mkdir -p /out && echo "$GREETING from a RUN step on $(uname -s)" > /out/greeting.txt && cat /out/greeting.txt
FROM {{REG}}/base/busybox:1
COPY --from=build /out/greeting.txt /greeting.txt
COPY app.txt /app.txt
CMD ["cat", "/greeting.txt"]
`

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRealBuilds builds with a real buildkitd on a real containerd and pushes to the real
// registry: a two-stage Dockerfile with a RUN step through the queue, the same build again
// after a buildkitd restart (cache hits), and the failures users meet.
func TestRealBuilds(t *testing.T) {
	e := newRealEnv(t)
	e.startBuildkitd(t)
	e.pushBase(t, e.regAddr+"/base/busybox:1")

	ctxDir := t.TempDir()
	writeFiles(t, ctxDir, map[string]string{
		"Dockerfile":    strings.ReplaceAll(testDockerfile, "{{REG}}", e.regAddr),
		"app.txt":       "app v1\n",
		".dockerignore": "big.bin\n",
		// Over the builder's limit, but ignored, so the context is small.
		"big.bin": strings.Repeat("x", 2<<20),
	})
	builder, err := NewBuilder(BuilderConfig{Bin: e.bkBin, Addr: e.daemon.Addr(), MaxContextBytes: 1 << 20, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	const commit = "0123456789abcdef0123456789abcdef01234567"
	branchRef, err := ImageRef(e.regAddr, "demo", "feature/login")
	if err != nil {
		t.Fatal(err)
	}
	req := Request{
		ContextDir: ctxDir,
		BuildArgs:  map[string]string{"GREETING": "hi"},
		Refs:       []string{e.regAddr + "/demo:" + commit, branchRef},
	}

	var first Record
	t.Run("build through the queue", func(t *testing.T) {
		q, err := NewQueue(QueueConfig{Dir: filepath.Join(e.root, "builds")}, builder.Build, e.log)
		if err != nil {
			t.Fatal(err)
		}
		qctx, stop := context.WithCancel(context.Background())
		qdone := make(chan error, 1)
		go func() { qdone <- q.Run(qctx) }()
		defer func() { stop(); <-qdone }()
		rec, err := q.Submit(Spec{App: "demo", Branch: "feature/login", Commit: commit, Request: req})
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		first, err = q.Wait(wctx, rec.ID)
		logText := tail(q.LogPath(rec.ID))
		if err != nil || first.Status != StatusSucceeded {
			t.Fatalf("build: %+v, %v\n%s\n%s", first, err, logText, tail(filepath.Join(e.root, "buildkit", "buildkitd.log")))
		}
		for _, want := range []string{"RUN mkdir -p /out", "hi from a RUN step on Linux", "pushed " + first.Digest} {
			if !strings.Contains(logText, want) {
				t.Errorf("build log lacks %q:\n%s", want, logText)
			}
		}
		t.Logf("first build took %s", first.Duration())
	})
	if first.Digest == "" {
		t.FailNow()
	}

	t.Run("pushed image", func(t *testing.T) {
		for _, ref := range req.Refs {
			r, _ := name.ParseReference(ref, name.Insecure)
			desc, err := remote.Head(r, remote.WithContext(t.Context()))
			if err != nil {
				t.Fatalf("manifest %s: %v", ref, err)
			}
			if desc.Digest.String() != first.Digest {
				t.Errorf("%s is %s, the build reported %s", ref, desc.Digest, first.Digest)
			}
		}
		greeting, img := fileInImage(t, branchRef, "/greeting.txt")
		if greeting != "hi from a RUN step on Linux\n" {
			t.Errorf("greeting.txt = %q", greeting)
		}
		cf, err := img.ConfigFile()
		if err != nil || strings.Join(cf.Config.Cmd, " ") != "cat /greeting.txt" {
			t.Errorf("image config: %v %v", cf.Config.Cmd, err)
		}
		// Pushed images are not also kept in containerd: storage stays within the cache limits.
		out, err := exec.CommandContext(t.Context(), filepath.Join(e.binDir, "ctr"), "--address", e.ctrSock,
			"--namespace", DefaultNamespace, "images", "list", "--quiet").Output()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("images in containerd's %s namespace: %q, %v; want none", DefaultNamespace, out, err)
		}
	})

	t.Run("second build after a restart is cached", func(t *testing.T) {
		e.stopBK()
		e.startBuildkitd(t)
		builder, err := NewBuilder(BuilderConfig{Bin: e.bkBin, Addr: e.daemon.Addr(), MaxContextBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		res, err := builder.Build(t.Context(), req, &log)
		if err != nil {
			t.Fatalf("%v\n%s", err, log.String())
		}
		// Every step that does work (RUN, COPY) must be a cache hit: "#7 [build 2/2] RUN ..."
		// followed later by "#7 CACHED".
		steps := regexp.MustCompile(`(?m)^#(\d+) \[[^\]]+\] (RUN|COPY) `).FindAllStringSubmatch(log.String(), -1)
		if len(steps) < 3 {
			t.Fatalf("found %d RUN/COPY steps in the progress:\n%s", len(steps), log.String())
		}
		for _, s := range steps {
			if !strings.Contains(log.String(), "#"+s[1]+" CACHED\n") {
				t.Errorf("step #%s (%s) was not a cache hit:\n%s", s[1], s[2], log.String())
			}
		}
		// An unchanged rebuild pushes the same image, so deployments that follow the branch do
		// not roll for nothing.
		if res.Digest != first.Digest {
			t.Errorf("cached rebuild has digest %s, the first build %s", res.Digest, first.Digest)
		}
	})

	t.Run("Dockerfile syntax error", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + e.regAddr + "/base/busybox:1\nFORM busybox\nRUN true\n"})
		var log bytes.Buffer
		_, err := builder.Build(t.Context(), Request{ContextDir: dir, Refs: []string{e.regAddr + "/demo:broken"}}, &log)
		var de *DockerfileError
		if !errors.As(err, &de) {
			t.Fatalf("err = %v, want a *DockerfileError\n%s", err, log.String())
		}
		if de.Line != 2 || strings.TrimSpace(de.Text) != "FORM busybox" || !strings.Contains(de.Msg, "unknown instruction") {
			t.Errorf("DockerfileError = %+v", *de)
		}
		if !strings.Contains(log.String(), ">>> FORM busybox") || !strings.Contains(log.String(), "ERROR: "+err.Error()) {
			t.Errorf("the log does not show the bad line and the error:\n%s", log.String())
		}
		t.Logf("error: %v", err)
	})

	t.Run("failing RUN step", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + e.regAddr + "/base/busybox:1\nRUN echo about to fail && exit 3\n"})
		var log bytes.Buffer
		_, err := builder.Build(t.Context(), Request{ContextDir: dir, Refs: []string{e.regAddr + "/demo:fails"}}, &log)
		var de *DockerfileError
		if err == nil || errors.As(err, &de) || !strings.Contains(err.Error(), "Dockerfile:2: ") || !strings.Contains(err.Error(), "exit code: 3") {
			t.Fatalf("err = %v, want a step failure with exit code 3\n%s", err, log.String())
		}
		if !strings.Contains(log.String(), "about to fail") {
			t.Errorf("the step's output is not in the log:\n%s", log.String())
		}
		t.Logf("error: %v", err)
	})

	t.Run("context over the limit", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\nCOPY . /\n", "data/big.bin": strings.Repeat("y", 2<<20)})
		var log bytes.Buffer
		_, err := builder.Build(t.Context(), Request{ContextDir: dir, Refs: []string{e.regAddr + "/demo:big"}}, &log)
		if !errors.Is(err, ErrContextTooLarge) || !strings.Contains(err.Error(), "data/big.bin") {
			t.Fatalf("err = %v, want ErrContextTooLarge naming data/big.bin\n%s", err, log.String())
		}
	})

	t.Run("timeout", func(t *testing.T) {
		dir := t.TempDir()
		writeFiles(t, dir, map[string]string{"Dockerfile": "FROM " + e.regAddr + "/base/busybox:1\nRUN echo forever && sleep 600\n"})
		var log bytes.Buffer
		started := time.Now()
		_, err := builder.Build(t.Context(), Request{ContextDir: dir, Refs: []string{e.regAddr + "/demo:slow"}, Timeout: 5 * time.Second}, &log)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v, want ErrTimeout\n%s", err, log.String())
		}
		if took := time.Since(started); took > 5*time.Second+stopGrace+5*time.Second {
			t.Errorf("a 5s timeout took %s to end the build", took)
		}
		// buildkitd is still fine afterwards.
		ws, err := ListWorkers(t.Context(), e.bkBin, e.daemon.Addr())
		if err != nil || len(ws) == 0 {
			t.Errorf("workers after a timeout: %v, %v", ws, err)
		}
	})
}
