package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/registry"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults for the zero values of Config.
const (
	DefaultNamespace          = "buildkit"
	DefaultRegistry           = "127.0.0.1:5000"
	DefaultRegistryAlias      = registry.Host
	DefaultNetworkMode        = "host"
	DefaultMaxCacheBytes      = 10 << 30
	DefaultReservedCacheBytes = 1 << 30
	DefaultMinFreePercent     = 10
	DefaultHistoryEntries     = 100
	DefaultHistoryMaxAge      = 7 * 24 * time.Hour
)

// Config configures buildkitd. The zero value of every field but Bin, Dir and
// ContainerdSocket means the default its doc names.
type Config struct {
	// Bin is the bundled buildkitd (bundle.Dir.Bin("buildkitd")). Required.
	Bin string
	// Dir holds everything of BuildKit's: Dir/root (its cache metadata and build history,
	// kept across restarts), Dir/buildkitd.toml (written at every start) and
	// Dir/run/buildkitd.sock (in a root-only directory: buildkitd makes its socket 0666).
	// Normally <data-dir>/buildkit. Required, absolute.
	Dir string
	// LogFile receives buildkitd's output. Empty means Dir/buildkitd.log.
	LogFile string
	// ContainerdSocket is gluebox's containerd (paths.Layout.ContainerdSocket()). Required.
	ContainerdSocket string
	// Namespace is the containerd namespace builds use. Empty means "buildkit"; never the
	// kubelet's "k8s.io", so pod images and build cache are garbage-collected separately.
	Namespace string
	// Runc is the runc that runs RUN steps (containerd's io.containerd.runc.v2 runtime with this
	// binary). Empty means the runc in containerd's PATH.
	Runc string
	// Registry is the built-in registry's host:port; builds pull from and push to it over plain
	// HTTP. Empty means "127.0.0.1:5000".
	Registry string
	// RegistryAliases are other names of the built-in registry (what pods use). Nil means
	// ["registry.gluebox.local"]; each is pulled through Registry.
	RegistryAliases []string
	// Mirrored are public registries whose images are looked up in the built-in registry
	// first, so FROM works offline with base images imported there (docker.io/library/busybox
	// is looked up as <Registry>/library/busybox) and falls back to the public registry. Nil
	// means ["docker.io"]; an empty non-nil slice mirrors nothing.
	Mirrored []string
	// NetworkMode is the network of RUN steps. Empty means "host", the only mode supported
	// now: it needs no CNI plugins or bridge and works offline, but RUN steps share the host's
	// network, loopback services included. ("bridge" would need the CNI firewall plugin, which
	// the bundle does not ship.)
	NetworkMode string
	// MaxCacheBytes is the build cache size BuildKit's garbage collector keeps under; ReservedCacheBytes
	// is what it never collects below; MinFreePercent makes it also collect while the disk has
	// less free space. Zero means 10 GiB, 1 GiB and 10 %.
	MaxCacheBytes      int64
	ReservedCacheBytes int64
	MinFreePercent     int
	// MaxParallelism bounds concurrently running build steps. Zero means the number of CPUs.
	MaxParallelism int
	// Debug turns on buildkitd's debug log.
	Debug bool
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Bin == "":
		return errors.New("build: Config.Bin (the bundled buildkitd) is required")
	case c.Dir == "" || !filepath.IsAbs(c.Dir):
		return fmt.Errorf("build: Config.Dir %q must be an absolute path", c.Dir)
	case c.ContainerdSocket == "":
		return errors.New("build: Config.ContainerdSocket is required")
	case c.Namespace == "k8s.io":
		return errors.New("build: the containerd namespace k8s.io belongs to the kubelet; builds need their own")
	case c.NetworkMode != "" && c.NetworkMode != "host":
		return fmt.Errorf("build: network mode %q is not supported (only host)", c.NetworkMode)
	case c.MaxCacheBytes < 0 || c.ReservedCacheBytes < 0 || c.MinFreePercent < 0 || c.MinFreePercent > 99:
		return errors.New("build: cache limits must not be negative (MinFreePercent at most 99)")
	}
	if len(c.socket()) > 104 {
		return fmt.Errorf("build: socket path %s is too long for a unix socket; use a shorter Dir", c.socket())
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.LogFile == "" {
		c.LogFile = filepath.Join(c.Dir, "buildkitd.log")
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.Registry == "" {
		c.Registry = DefaultRegistry
	}
	if c.RegistryAliases == nil {
		c.RegistryAliases = []string{DefaultRegistryAlias}
	}
	if c.Mirrored == nil {
		c.Mirrored = []string{"docker.io"}
	}
	if c.NetworkMode == "" {
		c.NetworkMode = DefaultNetworkMode
	}
	if c.MaxCacheBytes == 0 {
		c.MaxCacheBytes = DefaultMaxCacheBytes
	}
	if c.ReservedCacheBytes == 0 {
		c.ReservedCacheBytes = DefaultReservedCacheBytes
	}
	if c.MinFreePercent == 0 {
		c.MinFreePercent = DefaultMinFreePercent
	}
	if c.MaxParallelism == 0 {
		c.MaxParallelism = runtime.NumCPU()
	}
	return c
}

func (c Config) socket() string { return filepath.Join(c.Dir, "run", "buildkitd.sock") }

// Args returns buildkitd's command line for cfg (after defaults), config file at confPath.
func (c Config) Args(confPath string) []string {
	c = c.withDefaults()
	args := []string{
		"--config", confPath,
		"--root", filepath.Join(c.Dir, "root"),
		"--addr", "unix://" + c.socket(),
		"--oci-worker=false",
		"--containerd-worker=true",
		"--containerd-worker-addr", c.ContainerdSocket,
		"--containerd-worker-namespace", c.Namespace,
		"--containerd-worker-net", c.NetworkMode,
	}
	if c.Debug {
		args = append(args, "--debug")
	}
	return args
}

// RenderConfig returns buildkitd.toml for cfg (after defaults): the containerd worker's
// runtime, garbage collection and parallelism, the registries, and bounded build history.
func RenderConfig(c Config) string {
	c = c.withDefaults()
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Written by gluebox at every start; edit gluebox's configuration instead.\n")
	w("root = %q\n\n", filepath.Join(c.Dir, "root"))
	w("[grpc]\n  address = [%q]\n\n", "unix://"+c.socket())
	w("[cdi]\n  disabled = true\n\n")
	w("[history]\n  maxAge = %q\n  maxEntries = %d\n\n", DefaultHistoryMaxAge.String(), DefaultHistoryEntries)
	w("[worker.oci]\n  enabled = false\n\n")
	w("[worker.containerd]\n")
	w("  enabled = true\n")
	w("  address = %q\n", c.ContainerdSocket)
	w("  namespace = %q\n", c.Namespace)
	w("  snapshotter = \"overlayfs\"\n")
	w("  networkMode = %q\n", c.NetworkMode)
	w("  max-parallelism = %d\n", c.MaxParallelism)
	w("  gc = true\n")
	w("  reservedSpace = %q\n", strconv.FormatInt(c.ReservedCacheBytes, 10))
	w("  maxUsedSpace = %q\n", strconv.FormatInt(c.MaxCacheBytes, 10))
	w("  minFreeSpace = \"%d%%\"\n", c.MinFreePercent)
	w("  [worker.containerd.runtime]\n    name = \"io.containerd.runc.v2\"\n")
	if c.Runc != "" {
		w("    [worker.containerd.runtime.options]\n      BinaryName = %q\n", c.Runc)
	}
	w("\n")
	w("[registry.%q]\n  http = true\n  insecure = true\n\n", c.Registry)
	aliases := append([]string(nil), c.RegistryAliases...)
	sort.Strings(aliases)
	for _, a := range aliases {
		w("[registry.%q]\n  mirrors = [%q]\n  http = true\n  insecure = true\n\n", a, c.Registry)
	}
	mirrored := append([]string(nil), c.Mirrored...)
	sort.Strings(mirrored)
	for _, m := range mirrored {
		w("[registry.%q]\n  mirrors = [%q]\n\n", m, c.Registry)
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}

// Daemon runs buildkitd as a supervised child.
type Daemon struct {
	cfg   Config
	child *supervise.Child
	log   *slog.Logger
}

var _ supervise.Component = (*Daemon)(nil)

// NewDaemon creates buildkitd's directories, writes its configuration and returns the
// component; nothing runs until Run.
func NewDaemon(cfg Config, log *slog.Logger) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{cfg.Dir, 0o711}, {filepath.Join(cfg.Dir, "root"), 0o700}, {filepath.Join(cfg.Dir, "run"), 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("build: cannot create %s: %w", d.path, err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("build: cannot restrict %s: %w", d.path, err)
		}
	}
	confPath := filepath.Join(cfg.Dir, "buildkitd.toml")
	if err := os.WriteFile(confPath, []byte(RenderConfig(cfg)), 0o600); err != nil {
		return nil, fmt.Errorf("build: cannot write %s: %w", confPath, err)
	}
	d := &Daemon{cfg: cfg, log: log.With("component", "buildkitd")}
	sock := cfg.socket()
	d.child = supervise.NewChild(supervise.ChildConfig{
		Name:    "buildkitd",
		Path:    cfg.Bin,
		Args:    cfg.Args(confPath),
		Env:     []string{"PATH=" + filepath.Dir(cfg.Bin) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + cfg.Dir},
		Dir:     cfg.Dir,
		LogFile: cfg.LogFile,
		Ready: func(ctx context.Context) error {
			// Dial first: it fails fast while the socket is not there yet.
			var dl net.Dialer
			c, err := dl.DialContext(ctx, "unix", sock)
			if err != nil {
				return err
			}
			c.Close()
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			ws, err := ListWorkers(lctx, cfg.Bin, d.Addr())
			if err != nil {
				return err
			}
			if len(ws) == 0 {
				return fmt.Errorf("buildkitd has no worker: is containerd at %s reachable? see %s", cfg.ContainerdSocket, cfg.LogFile)
			}
			return nil
		},
		ReadyTimeout: 2 * time.Minute,
		StopTimeout:  20 * time.Second,
	}, d.log)
	return d, nil
}

// Addr is buildkitd's address for BuilderConfig.Addr: "unix://<Dir>/run/buildkitd.sock".
func (d *Daemon) Addr() string { return "unix://" + d.cfg.socket() }

// Bin is the buildkitd program, for BuilderConfig.Bin.
func (d *Daemon) Bin() string { return d.cfg.Bin }

// Name implements supervise.Component.
func (d *Daemon) Name() string { return "buildkitd" }

// Run implements supervise.Component: it runs buildkitd until ctx ends.
func (d *Daemon) Run(ctx context.Context) error { return d.child.Run(ctx) }

// WaitReady implements supervise.Component: buildkitd answers and lists a worker.
func (d *Daemon) WaitReady(ctx context.Context) error {
	select {
	case <-d.child.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StopTimeout implements supervise.StopBounder.
func (d *Daemon) StopTimeout() time.Duration { return 25 * time.Second }

// State reports the child's state for `gluebox status`.
func (d *Daemon) State() supervise.ChildState { return d.child.State() }
