package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/gluebox/gluebox/appliance/bundle"
	"github.com/gluebox/gluebox/appliance/hostcheck"
	"github.com/gluebox/gluebox/appliance/ociimage"
	"github.com/gluebox/gluebox/appliance/paths"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// ContainerdConfig is what the node's containerd is configured with.
type ContainerdConfig struct {
	Layout paths.Layout
	Bundle bundle.Dir
	// RestrictOOMScoreAdj must be true where gluebox cannot lower oom_score_adj (no
	// CAP_SYS_RESOURCE); see RestrictOOMScoreAdjNeeded.
	RestrictOOMScoreAdj bool
	// Registries maps registry host names (e.g. "registry.gluebox.local") to the plain-HTTP
	// endpoint that serves them (e.g. "http://127.0.0.1:5000").
	Registries map[string]string
}

// Containerd runs containerd as a supervised child.
type Containerd struct {
	cfg   ContainerdConfig
	child *supervise.Child
	log   *slog.Logger
}

// NewContainerd writes containerd's configuration and returns the component.
func NewContainerd(cfg ContainerdConfig, log *slog.Logger) (*Containerd, error) {
	l := cfg.Layout
	confPath := l.Join("containerd", "config.toml")
	if err := os.MkdirAll(filepath.Dir(confPath), 0o755); err != nil {
		return nil, err
	}
	conf, err := RenderContainerdConfig(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("cannot write %s: %w", confPath, err)
	}
	if err := writeRegistryHosts(l.Join("containerd", "certs.d"), cfg.Registries); err != nil {
		return nil, err
	}
	sock := l.ContainerdSocket()
	child := supervise.NewChild(supervise.ChildConfig{
		Name:    "containerd",
		Path:    cfg.Bundle.Bin("containerd"),
		Args:    []string{"--config", confPath},
		Env:     []string{"PATH=" + cfg.Bundle.BinDir() + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"},
		LogFile: filepath.Join(l.LogDir(), "containerd.log"),
		Ready: func(ctx context.Context) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", sock)
			if err != nil {
				return err
			}
			return c.Close()
		},
		StopTimeout: 15 * time.Second,
	}, log)
	return &Containerd{cfg: cfg, child: child, log: log}, nil
}

// Containerd and the kubelet end the process when they fail.
var _ = []supervise.Critical{(*Containerd)(nil), (*Kubelet)(nil)}

// Name implements supervise.Component.
func (c *Containerd) Name() string { return "containerd" }

// Critical implements supervise.Critical: without it the node is not a node, so its
// failure ends the process.
func (c *Containerd) Critical() bool { return true }

// Run implements supervise.Component.
func (c *Containerd) Run(ctx context.Context) error { return c.child.Run(ctx) }

// WaitReady implements supervise.Component: containerd answers on its socket and the pause
// image is imported.
func (c *Containerd) WaitReady(ctx context.Context) error {
	select {
	case <-c.child.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.ImportImage(ctx, c.cfg.Bundle.Image("pause"))
}

// State reports the child's state for `gluebox status`.
func (c *Containerd) State() supervise.ChildState { return c.child.State() }

// ImportImage imports an image tarball into the namespace the kubelet uses.
func (c *Containerd) ImportImage(ctx context.Context, tarball string) error {
	out, err := exec.CommandContext(ctx, c.cfg.Bundle.Bin("ctr"), "--address", c.cfg.Layout.ContainerdSocket(),
		"--namespace", "k8s.io", "images", "import", "--no-unpack=false", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cannot import image %s: %v: %s", tarball, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// PauseImage is the sandbox image every pod uses.
const PauseImage = ociimage.PauseImage

var containerdTmpl = template.Must(template.New("containerd").Parse(`# Written by gluebox at every start; edit gluebox's configuration instead.
version = 3
root = "{{.Root}}"
state = "{{.State}}"

[grpc]
  address = "{{.Socket}}"

[ttrpc]
  address = "{{.Socket}}.ttrpc"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  restrict_oom_score_adj = {{.RestrictOOM}}
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{{.Runc}}"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{.BinDir}}"]
    conf_dir = "{{.CNIConfDir}}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.Pause}}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{{.CertsDir}}"

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`))

// RenderContainerdConfig returns containerd's config.toml for cfg.
func RenderContainerdConfig(cfg ContainerdConfig) (string, error) {
	l := cfg.Layout
	var sb strings.Builder
	err := containerdTmpl.Execute(&sb, map[string]any{
		"Root":        l.ContainerdRoot(),
		"State":       l.ContainerdState(),
		"Socket":      l.ContainerdSocket(),
		"RestrictOOM": cfg.RestrictOOMScoreAdj,
		"Runc":        cfg.Bundle.Bin("runc"),
		"BinDir":      cfg.Bundle.BinDir(),
		"CNIConfDir":  l.CNIConfDir(),
		"Pause":       PauseImage,
		"CertsDir":    l.Join("containerd", "certs.d"),
	})
	return sb.String(), err
}

// writeRegistryHosts writes one hosts.toml per registry so containerd pulls those names from
// the given plain-HTTP endpoints.
func writeRegistryHosts(dir string, regs map[string]string) error {
	for host, endpoint := range regs {
		d := filepath.Join(dir, host)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		body := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", endpoint, endpoint)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(body), 0o644); err != nil {
			return fmt.Errorf("cannot write registry config for %s: %w", host, err)
		}
	}
	return nil
}

// RestrictOOMScoreAdjNeeded reports whether this process cannot lower its oom_score_adj,
// which runc needs for pod sandboxes unless containerd restricts it.
func RestrictOOMScoreAdjNeeded() bool { return !hostcheck.CanLowerOOMScoreAdj() }
