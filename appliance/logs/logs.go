// Package logs owns the log store of a gluebox server: VictoriaLogs (built into the bundle) run
// as a supervised child on 127.0.0.1, a client that queries it with LogsQL, follows new lines and
// ingests gluebox's own and build logs, and the collector that ships every container's output to
// it (VictoriaLogs' vlagent with its Kubernetes collector, also a supervised child).
//
// Lifecycle: New (or NewCollector) validates the Config and creates the directories; Run keeps
// the program running until its context ends and returns nil then; WaitReady returns once its
// /health answers OK. Start the store before the collector. Only the server (and the API layer,
// through Client) imports it.
//
// Budgets. VictoriaLogs enforces the disk budget itself: -retention.maxDiskSpaceUsageBytes drops
// the oldest per-day partitions once the data passes it, -retentionPeriod drops data by age,
// and -storage.minFreeDiskSpaceBytes stops ingestion before the filesystem fills. The collector's
// queue for a store that is down is bounded by -remoteWrite.maxDiskUsagePerURL. Memory is bounded
// softly by -memory.allowedBytes (caches) and CPU by GOMAXPROCS; with Limits.CgroupParent set in
// Config or CollectorConfig, the kernel also enforces hard limits on the program's cgroup (see
// their Limits fields): above the memory limit it is OOM-killed and restarted, so neither
// program can starve the node.
package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gluebox/gluebox/appliance/internal/victoria"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults of Config's zero values.
const (
	DefaultPort        = 9428
	DefaultRetention   = 30 * 24 * time.Hour
	DefaultMinFreeDisk = 512 << 20
	DefaultMemoryBytes = 256 << 20
	DefaultCPUs        = 1
	// DefaultMinMemoryLimit is the smallest default hard memory limit of VictoriaLogs and
	// vlagent; they idle at ~19 and ~13 MiB RSS (README "Performance"), and the limit counts
	// page cache too.
	DefaultMinMemoryLimit = 256 << 20
	// DefaultCollectorCPULimit is vlagent's default CPU limit in cores: tailing and shipping
	// lines is light, and it queues on disk when it falls behind.
	DefaultCollectorCPULimit = 0.5
)

// Config configures the log store. Every zero value means the documented default, except
// Binary and Dir, which are required.
type Config struct {
	// Binary is the bundled victoria-logs program. Required.
	Binary string
	// Dir holds the store's data, normally <data-dir>/logs. Required, absolute.
	Dir string
	// LogFile receives VictoriaLogs' own output; empty discards it.
	LogFile string
	// Port is the HTTP port on 127.0.0.1 (default 9428).
	Port int
	// Retention is how long lines are kept (default 30 days; at least 24h).
	Retention time.Duration
	// DiskBudget is how many bytes the lines may take before the oldest days are dropped
	// (-retention.maxDiskSpaceUsageBytes); zero means no budget beyond MinFreeDisk.
	DiskBudget int64
	// MinFreeDisk is the free space VictoriaLogs never eats into: below it, it stops accepting
	// lines (default 512 MiB).
	MinFreeDisk int64
	// MemoryBytes bounds VictoriaLogs' caches (-memory.allowedBytes; default 256 MiB).
	MemoryBytes int64
	// CPUs is how many cores it may use at once (GOMAXPROCS; default 1).
	CPUs int
	// Limits are the hard limits the kernel enforces on VictoriaLogs' cgroup (see
	// supervise.Limits). They apply only with Limits.CgroupParent set (the server uses
	// <cgroup root>/children); then a zero Limits.MemoryBytes means max(2 × MemoryBytes,
	// DefaultMinMemoryLimit), 512 MiB by default, and a zero Limits.CPU means CPUs cores;
	// negative values mean no limit.
	Limits supervise.Limits
	// ExtraFlags override or add VictoriaLogs flags by name without the dash; they win over
	// gluebox's values.
	ExtraFlags map[string]string
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Binary == "" {
		return errors.New("logs: Binary is required (the bundled victoria-logs program)")
	}
	if c.Dir == "" {
		return errors.New("logs: Dir is required (normally <data-dir>/logs)")
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("logs: Dir %q must be an absolute path", c.Dir)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("logs: Port %d is not a TCP port", c.Port)
	}
	if c.Retention != 0 && c.Retention < 24*time.Hour {
		return fmt.Errorf("logs: Retention %s is shorter than VictoriaLogs' minimum of 24h", c.Retention)
	}
	if c.DiskBudget < 0 || c.MinFreeDisk < 0 || c.MemoryBytes < 0 || c.CPUs < 0 {
		return errors.New("logs: DiskBudget, MinFreeDisk, MemoryBytes and CPUs must not be negative")
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	return nil
}

func (c *Config) defaults() {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.MinFreeDisk == 0 {
		c.MinFreeDisk = DefaultMinFreeDisk
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
	if c.CPUs == 0 {
		c.CPUs = DefaultCPUs
	}
	c.Limits = defaultLimits(c.Limits, max(2*c.MemoryBytes, DefaultMinMemoryLimit), float64(c.CPUs))
}

// defaultLimits fills the zero memory and CPU limits of l with the given defaults when l has a
// CgroupParent (without one there are no limits).
func defaultLimits(l supervise.Limits, memory int64, cpu float64) supervise.Limits {
	if l.CgroupParent != "" {
		if l.MemoryBytes == 0 {
			l.MemoryBytes = memory
		}
		if l.CPU == 0 {
			l.CPU = cpu
		}
	}
	return l
}

// DataDir is where VictoriaLogs keeps the lines.
func (c Config) DataDir() string { return filepath.Join(c.Dir, "data") }

// Args returns VictoriaLogs' command line for cfg (after defaults): gluebox's values overridden
// by cfg.ExtraFlags, sorted by name.
func Args(cfg Config) []string {
	flags := map[string]string{
		"storageDataPath":               cfg.DataDir(),
		"httpListenAddr":                net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		"retentionPeriod":               victoria.Duration(cfg.Retention),
		"storage.minFreeDiskSpaceBytes": strconv.FormatInt(cfg.MinFreeDisk, 10),
		"memory.allowedBytes":           strconv.FormatInt(cfg.MemoryBytes, 10),
	}
	if cfg.DiskBudget > 0 {
		flags["retention.maxDiskSpaceUsageBytes"] = strconv.FormatInt(cfg.DiskBudget, 10)
	}
	return victoria.Args(flags, cfg.ExtraFlags)
}

// Logs runs VictoriaLogs. Use New, then Run; WaitReady tells when it serves.
type Logs struct {
	cfg   Config
	child *supervise.Child
}

// New validates cfg, creates the data dir and prepares the child; nothing runs until Run.
func New(cfg Config, log *slog.Logger) (*Logs, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.DataDir(), 0o750); err != nil {
		return nil, fmt.Errorf("logs: cannot create %s: %w", cfg.DataDir(), err)
	}
	l := &Logs{cfg: cfg}
	health := l.URL() + "/health"
	l.child = supervise.NewChild(supervise.ChildConfig{
		Name:        "victoria-logs",
		Path:        cfg.Binary,
		Args:        Args(cfg),
		Env:         []string{"GOMAXPROCS=" + strconv.Itoa(cfg.CPUs)},
		Dir:         cfg.Dir,
		LogFile:     cfg.LogFile,
		Ready:       func(ctx context.Context) error { return victoria.Health(ctx, health) },
		StopTimeout: 30 * time.Second,
		Limits:      cfg.Limits,
	}, log.With("component", "logs"))
	return l, nil
}

var (
	_ supervise.Component = (*Logs)(nil)
	_ supervise.Component = (*Collector)(nil)
)

// Name implements supervise.Component.
func (l *Logs) Name() string { return "victoria-logs" }

// Run implements supervise.Component: it runs VictoriaLogs until ctx ends and returns nil then,
// or an error when it keeps dying.
func (l *Logs) Run(ctx context.Context) error { return l.child.Run(ctx) }

// WaitReady implements supervise.Component: it returns once /health has answered OK.
func (l *Logs) WaitReady(ctx context.Context) error { return waitReady(ctx, l.child) }

// State reports the child's state for `gluebox status`.
func (l *Logs) State() supervise.ChildState { return l.child.State() }

// URL is the base URL VictoriaLogs serves on, e.g. http://127.0.0.1:9428.
func (l *Logs) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(l.cfg.Port))
}

// InsertURL is where a collector sends lines in VictoriaLogs' native format.
func (l *Logs) InsertURL() string { return l.URL() + "/insert/native" }

// Client returns a client for this store.
func (l *Logs) Client() *Client { return &Client{BaseURL: l.URL()} }

// DiskUsage returns how many bytes the lines take on disk now.
func (l *Logs) DiskUsage() (int64, error) { return victoria.DirSize(l.cfg.DataDir()) }

func waitReady(ctx context.Context, c *supervise.Child) error {
	select {
	case <-c.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
