package imagebuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gluebox/gluebox/appliance/internal/golden"
)

func TestRenderConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"defaults.toml", Config{Bin: "/b/buildkitd", Dir: "/var/lib/gluebox/buildkit", ContainerdSocket: "/var/lib/gluebox/containerd/state/containerd.sock", MaxParallelism: 2}},
		{"custom.toml", Config{Bin: "/b/buildkitd", Dir: "/d/bk", ContainerdSocket: "/d/ctr.sock", Namespace: "builds",
			Runc: "/b/runc", Registry: "127.0.0.1:5001", RegistryAliases: []string{"registry.gluebox.local", "gluebox"},
			Mirrored: []string{}, MaxCacheBytes: 5 << 30, ReservedCacheBytes: 512 << 20, MinFreePercent: 20, MaxParallelism: 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, tt.name, []byte(RenderConfig(tt.cfg)))
		})
	}
}

func TestArgs(t *testing.T) {
	cfg := Config{Bin: "/b/buildkitd", Dir: "/d/bk", ContainerdSocket: "/d/ctr.sock"}
	want := []string{"--config", "/d/bk/buildkitd.toml", "--root", "/d/bk/root", "--addr", "unix:///d/bk/run/buildkitd.sock",
		"--oci-worker=false", "--containerd-worker=true", "--containerd-worker-addr", "/d/ctr.sock",
		"--containerd-worker-namespace", "buildkit", "--containerd-worker-net", "host"}
	if diff := cmp.Diff(want, cfg.Args("/d/bk/buildkitd.toml")); diff != "" {
		t.Errorf("Args (-want +got):\n%s", diff)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Bin: "/b/buildkitd", Dir: "/d/bk", ContainerdSocket: "/d/ctr.sock"}
	for _, tt := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{"ok", func(*Config) {}, ""},
		{"no bin", func(c *Config) { c.Bin = "" }, "Bin"},
		{"relative dir", func(c *Config) { c.Dir = "bk" }, "absolute"},
		{"no containerd", func(c *Config) { c.ContainerdSocket = "" }, "ContainerdSocket"},
		{"kubelet namespace", func(c *Config) { c.Namespace = "k8s.io" }, "kubelet"},
		{"bridge", func(c *Config) { c.NetworkMode = "bridge" }, "not supported"},
		{"negative cache", func(c *Config) { c.MaxCacheBytes = -1 }, "negative"},
		{"long socket path", func(c *Config) { c.Dir = "/" + strings.Repeat("x", 100) }, "too long"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mutate(&c)
			err := c.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewDaemonWritesConfig(t *testing.T) {
	dir := t.TempDir()
	d, err := NewDaemon(Config{Bin: "/b/buildkitd", Dir: dir, ContainerdSocket: "/d/ctr.sock"}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr() != "unix://"+filepath.Join(dir, "run", "buildkitd.sock") {
		t.Errorf("Addr() = %s", d.Addr())
	}
	b, err := os.ReadFile(filepath.Join(dir, "buildkitd.toml"))
	if err != nil || !strings.Contains(string(b), `namespace = "buildkit"`) {
		t.Errorf("buildkitd.toml: %v\n%s", err, b)
	}
	for _, sub := range []string{"run", "root"} {
		st, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, mode %v; want 0700 (buildkitd's socket is world-writable)", sub, err, st.Mode().Perm())
		}
	}
}

func TestBuilderRejectsBadRequests(t *testing.T) {
	ctxDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ctxDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The program is never run: every request here is refused before.
	b, err := NewBuilder(BuilderConfig{Bin: "/nonexistent/buildkitd", Addr: "unix:///nonexistent.sock"})
	if err != nil {
		t.Fatal(err)
	}
	ref := []string{"127.0.0.1:5000/app:main"}
	for _, tt := range []struct {
		name    string
		req     Request
		wantIs  error
		wantErr string
	}{
		{"missing Dockerfile", Request{ContextDir: ctxDir, Dockerfile: "build/Dockerfile.prod", Refs: ref}, ErrNoDockerfile, "build/Dockerfile.prod does not exist"},
		{"Dockerfile is a directory", Request{ContextDir: ctxDir, Dockerfile: "sub", Refs: ref}, ErrNoDockerfile, "is a directory"},
		{"Dockerfile outside context", Request{ContextDir: ctxDir, Dockerfile: "../Dockerfile", Refs: ref}, ErrBadRequest, "inside the context"},
		{"relative context", Request{ContextDir: "app", Refs: ref}, ErrBadRequest, "absolute"},
		{"missing context", Request{ContextDir: filepath.Join(ctxDir, "nope"), Refs: ref}, ErrBadRequest, "context directory"},
		{"no refs", Request{ContextDir: ctxDir}, ErrBadRequest, "no image reference"},
		{"branch name as tag", Request{ContextDir: ctxDir, Refs: []string{"127.0.0.1:5000/app:feature/x"}}, ErrBadRequest, "invalid image reference"},
		{"ref without registry", Request{ContextDir: ctxDir, Refs: []string{"app:main"}}, ErrBadRequest, "must name its registry"},
		{"bad build arg", Request{ContextDir: ctxDir, Refs: ref, BuildArgs: map[string]string{"A=B": "x"}}, ErrBadRequest, "build argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log strings.Builder
			_, err := b.Build(t.Context(), tt.req, &log)
			if !errorIs(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build() = %v, want %v containing %q", err, tt.wantIs, tt.wantErr)
			}
			if !strings.Contains(log.String(), "ERROR: "+err.Error()) {
				t.Errorf("the log does not end with the error:\n%s", log.String())
			}
		})
	}
}
