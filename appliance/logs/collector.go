package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/victoria"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults of CollectorConfig's zero values.
const (
	DefaultCollectorPort = 9429
	// DefaultLogsPath is where the kubelet links every container's log file
	// (<pod>_<namespace>_<container>-<id>.log, pointing into /var/log/pods).
	DefaultLogsPath = "/var/log/containers"
	// DefaultMaxQueueBytes bounds the collector's on-disk queue while the store is down.
	DefaultMaxQueueBytes = 1 << 30
	// DefaultCollectorMemoryBytes bounds vlagent's caches.
	DefaultCollectorMemoryBytes = 64 << 20
)

// CollectorConfig configures the container log collector: vlagent with its Kubernetes
// collector, which watches the node's pods through the API and tails their log files, adding
// the fields kubernetes.pod_namespace, kubernetes.pod_name, kubernetes.container_name,
// kubernetes.pod_labels.<label> (the app and env labels gluebox puts on pods among them) and
// kubernetes.pod_node_name. The stream of a line is its namespace, pod and container.
type CollectorConfig struct {
	// Binary is the bundled vlagent program. Required.
	Binary string
	// Dir holds the read offsets of every log file (Dir/checkpoints.json) and the queue of
	// lines the store has not taken yet (Dir/queue), so nothing is lost or sent twice across a
	// restart of gluebox or of the store. Normally <data-dir>/logs-collector. Required, absolute.
	Dir string
	// LogFile receives vlagent's own output; empty discards it.
	LogFile string
	// Port is vlagent's HTTP port on 127.0.0.1, for /health and /metrics (default 9429).
	Port int
	// Kubeconfig is the identity vlagent reads nodes, namespaces and pods with (get, list and
	// watch). Required. vlagent collects for the first node the API lists: gluebox runs one
	// node per cluster.
	Kubeconfig string
	// LogsPath is the kubelet's directory of container log links (default /var/log/containers).
	LogsPath string
	// StoreURL is the store's native insert endpoint (Logs.InsertURL()). Required.
	StoreURL string
	// ExtraFields are added to every line, e.g. {"cluster": "prod"}.
	ExtraFields map[string]string
	// ExcludeFilter is a LogsQL filter on the kubernetes.* fields of containers not to
	// collect, e.g. `kubernetes.pod_namespace:=kube-system`. Empty collects everything.
	ExcludeFilter string
	// MaxQueueBytes bounds the on-disk queue for a store that is down; past it the oldest
	// queued lines are dropped (default 1 GiB).
	MaxQueueBytes int64
	// MemoryBytes bounds vlagent's caches (default 64 MiB); CPUs is its GOMAXPROCS (default 1).
	MemoryBytes int64
	CPUs        int
	// Limits are the hard limits the kernel enforces on vlagent's cgroup (see
	// supervise.Limits). They apply only with Limits.CgroupParent set (the server uses
	// <cgroup root>/children); then a zero Limits.MemoryBytes means max(2 × MemoryBytes,
	// DefaultMinMemoryLimit), 256 MiB by default, and a zero Limits.CPU means
	// DefaultCollectorCPULimit (half a core); negative values mean no limit.
	Limits supervise.Limits
	// ExtraFlags override or add vlagent flags by name without the dash.
	ExtraFlags map[string]string
}

// Validate reports the first setting that cannot work.
func (c CollectorConfig) Validate() error {
	switch {
	case c.Binary == "":
		return errors.New("logs: collector Binary is required (the bundled vlagent program)")
	case c.Dir == "":
		return errors.New("logs: collector Dir is required (normally <data-dir>/logs-collector)")
	case !filepath.IsAbs(c.Dir):
		return fmt.Errorf("logs: collector Dir %q must be an absolute path", c.Dir)
	case c.Kubeconfig == "":
		return errors.New("logs: collector Kubeconfig is required")
	case c.StoreURL == "":
		return errors.New("logs: collector StoreURL is required (the store's /insert/native URL)")
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("logs: collector Port %d is not a TCP port", c.Port)
	case c.MaxQueueBytes < 0 || c.MemoryBytes < 0 || c.CPUs < 0:
		return errors.New("logs: collector MaxQueueBytes, MemoryBytes and CPUs must not be negative")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("logs: collector %w", err)
	}
	if u, err := url.Parse(c.StoreURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("logs: collector StoreURL %q is not an http(s) URL", c.StoreURL)
	}
	for k := range c.ExtraFields {
		if k == "" {
			return errors.New("logs: collector ExtraFields has an empty field name")
		}
	}
	return nil
}

func (c *CollectorConfig) defaults() {
	if c.Port == 0 {
		c.Port = DefaultCollectorPort
	}
	if c.LogsPath == "" {
		c.LogsPath = DefaultLogsPath
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultCollectorMemoryBytes
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	c.Limits = defaultLimits(c.Limits, max(2*c.MemoryBytes, DefaultMinMemoryLimit), DefaultCollectorCPULimit)
}

// CheckpointsFile is where vlagent keeps the read offset of every log file.
func (c CollectorConfig) CheckpointsFile() string { return filepath.Join(c.Dir, "checkpoints.json") }

// QueueDir is where vlagent queues lines the store has not taken yet.
func (c CollectorConfig) QueueDir() string { return filepath.Join(c.Dir, "queue") }

// CollectorArgs returns vlagent's command line for cfg (after defaults): gluebox's values
// overridden by cfg.ExtraFlags, sorted by name.
func CollectorArgs(cfg CollectorConfig) ([]string, error) {
	flags := map[string]string{
		"httpListenAddr":                      net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		"tmpDataPath":                         cfg.Dir,
		"remoteWrite.url":                     cfg.StoreURL,
		"remoteWrite.tmpDataPath":             cfg.QueueDir(),
		"remoteWrite.maxDiskUsagePerURL":      strconv.FormatInt(cfg.MaxQueueBytes, 10),
		"kubernetesCollector":                 "true",
		"kubernetesCollector.logsPath":        cfg.LogsPath,
		"kubernetesCollector.checkpointsPath": cfg.CheckpointsFile(),
		"memory.allowedBytes":                 strconv.FormatInt(cfg.MemoryBytes, 10),
	}
	if len(cfg.ExtraFields) > 0 {
		b, err := json.Marshal(cfg.ExtraFields) // sorted keys: a stable command line
		if err != nil {
			return nil, fmt.Errorf("logs: cannot encode ExtraFields: %w", err)
		}
		flags["kubernetesCollector.extraFields"] = string(b)
	}
	if cfg.ExcludeFilter != "" {
		flags["kubernetesCollector.excludeFilter"] = cfg.ExcludeFilter
	}
	return victoria.Args(flags, cfg.ExtraFlags), nil
}

// Collector runs vlagent. Use NewCollector, then Run; WaitReady tells when it serves.
type Collector struct {
	cfg   CollectorConfig
	child *supervise.Child
}

// NewCollector validates cfg, creates its directory and prepares the child; nothing runs until
// Run.
func NewCollector(cfg CollectorConfig, log *slog.Logger) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.QueueDir(), 0o750); err != nil {
		return nil, fmt.Errorf("logs: cannot create %s: %w", cfg.QueueDir(), err)
	}
	args, err := CollectorArgs(cfg)
	if err != nil {
		return nil, err
	}
	health := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)) + "/health"
	c := &Collector{cfg: cfg}
	c.child = supervise.NewChild(supervise.ChildConfig{
		Name: "vlagent",
		Path: cfg.Binary,
		Args: args,
		// Without KUBERNETES_SERVICE_HOST vlagent reads the kubeconfig named here.
		Env:     []string{"KUBECONFIG=" + cfg.Kubeconfig, "GOMAXPROCS=" + strconv.Itoa(cfg.CPUs), "GOGC=50"},
		Dir:     cfg.Dir,
		LogFile: cfg.LogFile,
		Ready:   func(ctx context.Context) error { return victoria.Health(ctx, health) },
		// On SIGTERM vlagent writes its checkpoints and flushes its queue to disk.
		StopTimeout: 30 * time.Second,
		Limits:      cfg.Limits,
	}, log.With("component", "logs-collector"))
	return c, nil
}

// Name implements supervise.Component.
func (c *Collector) Name() string { return "vlagent" }

// Run implements supervise.Component: it runs vlagent until ctx ends and returns nil then, or an
// error when it keeps dying.
func (c *Collector) Run(ctx context.Context) error { return c.child.Run(ctx) }

// WaitReady implements supervise.Component: it returns once vlagent's /health has answered OK.
func (c *Collector) WaitReady(ctx context.Context) error { return waitReady(ctx, c.child) }

// State reports the child's state for `gluebox status`.
func (c *Collector) State() supervise.ChildState { return c.child.State() }
