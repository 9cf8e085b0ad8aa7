// Package metrics owns the metrics store of a gluebox server: VictoriaMetrics single-node (built
// into the bundle) run as a supervised child on 127.0.0.1, the scrape configuration it follows
// (generated here from Go structs: kubelet, cAdvisor, apiserver, gluebox itself and annotated
// pods), a client for its PromQL/MetricsQL query API, and a proxy for its query UI.
//
// Lifecycle: New validates the Config, creates the directories and writes the scrape
// configuration; Run starts VictoriaMetrics and keeps it running until its context ends (it
// returns nil then); WaitReady returns once /health answers OK. Only the server (and the API
// layer, through Client and UIHandler) imports it.
//
// Budgets. VictoriaMetrics single-node drops data by age only (-retentionPeriod); it has no
// "keep at most N bytes" setting. The disk budget is therefore enforced by age: every
// BudgetCheckInterval the data dir is measured, and above 90 % of DiskBudget the retention is
// shortened in proportion and VictoriaMetrics restarted with it, so the oldest samples go
// first (budget.go, NextRetention); it grows back when usage falls. As a last guard,
// -storage.minFreeDiskSpaceBytes is derived from the filesystem's free space and the data
// dir's size so that VictoriaMetrics stops accepting new samples (read-only mode, queries keep
// working) rather than grow past the budget, never letting free space fall below MinFreeDisk.
// Memory is bounded softly by -memory.allowedBytes (the caches VictoriaMetrics sizes itself
// from) and CPU by GOMAXPROCS; with
// Config.Limits.CgroupParent set, the kernel also enforces hard limits on its cgroup (by default
// twice the cache budget, at least 256 MiB, and CPUs cores): above the memory limit it is
// OOM-killed and restarted, so a runaway query cannot starve the node.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/internal/victoria"
	"github.com/gluebox/gluebox/appliance/supervise"
)

// Defaults of Config's zero values.
const (
	DefaultPort           = 8428
	DefaultRetention      = 30 * 24 * time.Hour
	DefaultMinFreeDisk    = 512 << 20
	DefaultMemoryBytes    = 256 << 20
	DefaultCPUs           = 1
	DefaultScrapeInterval = 15 * time.Second
	// DefaultMinMemoryLimit is the smallest default hard memory limit: VictoriaMetrics idles
	// at ~84 MiB RSS (README "Performance") and the limit counts page cache too.
	DefaultMinMemoryLimit = 256 << 20
	// DefaultLatencyOffset replaces VictoriaMetrics' 30s -search.latencyOffset: with one local
	// scraper there is no delayed remote writer to wait for, and a fresh series should be
	// queryable within one scrape interval.
	DefaultLatencyOffset = "5s"
)

// Config configures the metrics store. Every zero value means the documented default, except
// Binary and Dir, which are required.
type Config struct {
	// Binary is the bundled victoria-metrics program. Required.
	Binary string
	// Dir holds everything of the store, normally <data-dir>/metrics: the samples under
	// Dir/data and the generated scrape configuration Dir/scrape.yaml. Required, absolute.
	Dir string
	// LogFile receives VictoriaMetrics' output; empty discards it.
	LogFile string
	// Port is the HTTP port on 127.0.0.1 (default 8428).
	Port int
	// Retention is how long samples are kept (default 30 days; at least 24h).
	Retention time.Duration
	// DiskBudget is how many bytes the samples may take; zero means no budget beyond
	// MinFreeDisk. See the package doc for what enforces it.
	DiskBudget int64
	// MinFreeDisk is the free space VictoriaMetrics never eats into: below it, it stops
	// accepting samples (default 512 MiB).
	MinFreeDisk int64
	// MemoryBytes bounds VictoriaMetrics' caches (-memory.allowedBytes; default 256 MiB).
	MemoryBytes int64
	// CPUs is how many cores it may use at once (GOMAXPROCS; default 1).
	CPUs int
	// Limits are the hard limits the kernel enforces on VictoriaMetrics' cgroup (see
	// supervise.Limits). They apply only with Limits.CgroupParent set (the server uses
	// <cgroup root>/children); then a zero Limits.MemoryBytes means max(2 × MemoryBytes,
	// DefaultMinMemoryLimit), 512 MiB by default, and a zero Limits.CPU means CPUs cores;
	// negative values mean no limit.
	Limits supervise.Limits
	// ScrapeInterval is how often every target is scraped (default 15s).
	ScrapeInterval time.Duration
	// BudgetCheckInterval is how often the samples are measured against DiskBudget (default
	// 5m); see NextRetention.
	BudgetCheckInterval time.Duration
	// Targets says what to scrape.
	Targets Targets
	// ExtraFlags override or add VictoriaMetrics flags by name without the dash, e.g.
	// {"search.maxQueryDuration": "1m"}; they win over gluebox's values.
	ExtraFlags map[string]string
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if c.Binary == "" {
		return errors.New("metrics: Binary is required (the bundled victoria-metrics program)")
	}
	if c.Dir == "" {
		return errors.New("metrics: Dir is required (normally <data-dir>/metrics)")
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("metrics: Dir %q must be an absolute path", c.Dir)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("metrics: Port %d is not a TCP port", c.Port)
	}
	if c.Retention != 0 && c.Retention < 24*time.Hour {
		return fmt.Errorf("metrics: Retention %s is shorter than VictoriaMetrics' minimum of 24h", c.Retention)
	}
	if c.DiskBudget < 0 || c.MinFreeDisk < 0 || c.MemoryBytes < 0 || c.CPUs < 0 || c.ScrapeInterval < 0 {
		return errors.New("metrics: DiskBudget, MinFreeDisk, MemoryBytes, CPUs and ScrapeInterval must not be negative")
	}
	if c.ScrapeInterval != 0 && c.ScrapeInterval < time.Second {
		return fmt.Errorf("metrics: ScrapeInterval %s is shorter than 1s", c.ScrapeInterval)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return c.Targets.validate()
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
	if c.ScrapeInterval == 0 {
		c.ScrapeInterval = DefaultScrapeInterval
	}
	if c.BudgetCheckInterval <= 0 {
		c.BudgetCheckInterval = DefaultBudgetCheckInterval
	}
	if c.Limits.CgroupParent != "" {
		if c.Limits.MemoryBytes == 0 {
			c.Limits.MemoryBytes = max(2*c.MemoryBytes, DefaultMinMemoryLimit)
		}
		if c.Limits.CPU == 0 {
			c.Limits.CPU = float64(c.CPUs)
		}
	}
}

// DataDir is where VictoriaMetrics keeps the samples.
func (c Config) DataDir() string { return filepath.Join(c.Dir, "data") }

// ScrapeFile is the generated scrape configuration.
func (c Config) ScrapeFile() string { return filepath.Join(c.Dir, "scrape.yaml") }

// Metrics runs VictoriaMetrics. Use New, then Run; WaitReady tells when it serves.
type Metrics struct {
	cfg    Config
	log    *slog.Logger
	retune chan time.Duration

	mu        sync.Mutex
	child     *supervise.Child
	retention time.Duration // effective; see budget.go
}

// New validates cfg, creates the directories, writes the scrape configuration and prepares the
// child; nothing runs until Run.
func New(cfg Config, log *slog.Logger) (*Metrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "metrics")
	if err := os.MkdirAll(cfg.DataDir(), 0o750); err != nil {
		return nil, fmt.Errorf("metrics: cannot create %s: %w", cfg.DataDir(), err)
	}
	scrape, err := ScrapeConfigYAML(cfg)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(cfg.ScrapeFile(), scrape, 0o640); err != nil {
		return nil, fmt.Errorf("metrics: cannot write scrape config: %w", err)
	}
	m := &Metrics{cfg: cfg, log: log, retune: make(chan time.Duration, 1), retention: loadRetention(cfg)}
	if m.retention < cfg.Retention {
		log.Warn("metrics retention is shortened to fit the disk budget", "retention", m.retention, "configured", cfg.Retention)
	}
	child, err := m.newChild(m.retention)
	if err != nil {
		return nil, err
	}
	m.child = child
	return m, nil
}

// newChild prepares VictoriaMetrics with the given retention, and the free-space floor that
// keeps its data inside the budget.
func (m *Metrics) newChild(retention time.Duration) (*supervise.Child, error) {
	cfg := m.cfg
	cfg.Retention = retention
	minFree := uint64(cfg.MinFreeDisk)
	if cfg.DiskBudget > 0 {
		free, err := victoria.FreeBytes(cfg.DataDir())
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		used, err := victoria.DirSize(cfg.DataDir())
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		minFree = MinFreeForBudget(free, uint64(used), uint64(cfg.DiskBudget), minFree)
		if used >= cfg.DiskBudget {
			m.log.Warn("metrics data is over its disk budget; VictoriaMetrics is read-only until retention frees space",
				"used", used, "budget", cfg.DiskBudget)
		}
	}
	health := m.URL() + "/health"
	return supervise.NewChild(supervise.ChildConfig{
		Name:    "victoria-metrics",
		Path:    cfg.Binary,
		Args:    Args(cfg, minFree),
		Env:     []string{"GOMAXPROCS=" + strconv.Itoa(cfg.CPUs)},
		Dir:     cfg.Dir,
		LogFile: cfg.LogFile,
		Ready:   func(ctx context.Context) error { return victoria.Health(ctx, health) },
		// VictoriaMetrics flushes in-memory parts on SIGTERM; give it time on a slow disk.
		StopTimeout: 30 * time.Second,
		Limits:      cfg.Limits,
	}, m.log), nil
}

func (m *Metrics) currentChild() *supervise.Child {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.child
}

// replaceChild prepares the next VictoriaMetrics with retention r (the old one has stopped).
func (m *Metrics) replaceChild(r time.Duration) error {
	c, err := m.newChild(r)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.child, m.retention = c, r
	m.mu.Unlock()
	return nil
}

// Args returns VictoriaMetrics' command line for cfg (after defaults) with the given
// -storage.minFreeDiskSpaceBytes: gluebox's values overridden by cfg.ExtraFlags, sorted by name.
func Args(cfg Config, minFreeDisk uint64) []string {
	return victoria.Args(map[string]string{
		"storageDataPath":                      cfg.DataDir(),
		"httpListenAddr":                       net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		"retentionPeriod":                      promDuration(cfg.Retention),
		"storage.minFreeDiskSpaceBytes":        strconv.FormatUint(minFreeDisk, 10),
		"memory.allowedBytes":                  strconv.FormatInt(cfg.MemoryBytes, 10),
		"promscrape.config":                    cfg.ScrapeFile(),
		"promscrape.config.strictParse":        "true",
		"promscrape.suppressScrapeErrorsDelay": "10m",
		"selfScrapeInterval":                   promDuration(cfg.ScrapeInterval),
		"search.latencyOffset":                 DefaultLatencyOffset,
	}, cfg.ExtraFlags)
}

// MinFreeForBudget returns the -storage.minFreeDiskSpaceBytes that makes VictoriaMetrics stop
// accepting samples once its data (used bytes now, on a filesystem with free bytes now) would
// exceed budget, assuming nothing else on the filesystem grows; never less than floor.
func MinFreeForBudget(free, used, budget, floor uint64) uint64 {
	if budget == 0 || free+used <= budget {
		return floor
	}
	return max(free+used-budget, floor)
}

var _ supervise.Component = (*Metrics)(nil)

// Name implements supervise.Component.
func (m *Metrics) Name() string { return "victoria-metrics" }

// WaitReady implements supervise.Component: it returns once /health of the VictoriaMetrics
// that Run runs now has answered OK (after a failed Run, the next Run's).
func (m *Metrics) WaitReady(ctx context.Context) error { return m.currentChild().WaitReady(ctx) }

// State reports the child's state for `gluebox status`.
func (m *Metrics) State() supervise.ChildState { return m.currentChild().State() }

// URL is the base URL VictoriaMetrics serves on, e.g. http://127.0.0.1:8428.
func (m *Metrics) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(m.cfg.Port))
}

// Client returns a query client for this store; ranges longer than the retention plus a day
// are refused.
func (m *Metrics) Client() *Client {
	return &Client{BaseURL: m.URL(), MaxRange: m.cfg.Retention + 24*time.Hour}
}

// UIHandler returns the proxy to VictoriaMetrics' query UI for mounting at prefix; see
// NewUIHandler.
func (m *Metrics) UIHandler(prefix string) http.Handler {
	return NewUIHandler(m.URL(), prefix)
}

// DiskUsage returns how many bytes the samples take on disk now.
func (m *Metrics) DiskUsage() (int64, error) { return victoria.DirSize(m.cfg.DataDir()) }

var promDuration = victoria.Duration
