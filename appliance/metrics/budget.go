package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gluebox/gluebox/appliance/atomicfile"
	"github.com/gluebox/gluebox/appliance/internal/victoria"
)

// The disk budget, enforced: VictoriaMetrics drops data by age only, so when the samples grow
// past BudgetHigh of Config.DiskBudget, the retention is shortened in proportion (aiming at
// BudgetTarget of the budget, never below VictoriaMetrics' minimum of a day) and
// VictoriaMetrics is restarted with it. Queries stop returning samples older than the new
// retention at once and VictoriaMetrics deletes their parts in the background (within about
// ten minutes): the oldest data goes first. When usage falls below BudgetLow the retention
// grows back toward Config.Retention. The effective retention is kept in Dir/retention so a
// restart does not undo it; EffectiveRetention reports it for metrics and alerts.
const (
	BudgetHigh   = 0.9
	BudgetTarget = 0.7
	BudgetLow    = 0.5
	// MinRetention is VictoriaMetrics' smallest -retentionPeriod.
	MinRetention = 24 * time.Hour
	// DefaultBudgetCheckInterval is how often the data dir is measured against the budget.
	DefaultBudgetCheckInterval = 5 * time.Minute
)

// NextRetention returns the retention to run with when the samples take usage bytes of a
// budget, the retention now is current and the configured one is configured. A zero budget
// means no budget: configured.
func NextRetention(usage, budget int64, current, configured time.Duration) time.Duration {
	if budget <= 0 {
		return configured
	}
	if current <= 0 || current > configured {
		current = configured
	}
	u, b := float64(usage), float64(budget)
	switch {
	case u > BudgetHigh*b && current > MinRetention:
		r := time.Duration(float64(current) * BudgetTarget * b / u).Truncate(time.Hour)
		if r >= current {
			r = current - 24*time.Hour
		}
		return max(r, MinRetention)
	case u < BudgetLow*b && current < configured:
		return min(configured, (2 * current).Truncate(time.Hour))
	}
	return current
}

// retentionFile keeps the effective retention across restarts.
func (c Config) retentionFile() string { return filepath.Join(c.Dir, "retention") }

// loadRetention returns the effective retention kept by an earlier run, or cfg.Retention.
func loadRetention(cfg Config) time.Duration {
	if cfg.DiskBudget <= 0 {
		return cfg.Retention
	}
	b, err := os.ReadFile(cfg.retentionFile())
	if err != nil {
		return cfg.Retention
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil || d < MinRetention || d > cfg.Retention {
		return cfg.Retention
	}
	return d
}

func saveRetention(cfg Config, d time.Duration) error {
	if d == cfg.Retention {
		err := os.Remove(cfg.retentionFile())
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return atomicfile.WriteFile(cfg.retentionFile(), []byte(d.String()+"\n"), 0o640)
}

// EffectiveRetention is the retention VictoriaMetrics runs with now: Config.Retention, or less
// while the disk budget needs it.
func (m *Metrics) EffectiveRetention() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.retention
}

// Budget returns the configured retention and disk budget (0: none).
func (m *Metrics) Budget() (retention time.Duration, diskBudget int64) {
	return m.cfg.Retention, m.cfg.DiskBudget
}

// checkBudget measures the data dir against budget and asks Run for a restart when the
// retention must change.
func (m *Metrics) checkBudget(budget int64) {
	usage, err := victoria.DirSize(m.cfg.DataDir())
	if err != nil {
		m.log.Warn("cannot measure the metrics data dir", "err", err)
		return
	}
	cur := m.EffectiveRetention()
	next := NextRetention(usage, budget, cur, m.cfg.Retention)
	if next == cur {
		return
	}
	if next < cur {
		m.log.Warn("metrics are near their disk budget: retention shortened, the oldest samples are dropped",
			"used", usage, "budget", budget, "from", cur, "to", next)
	} else {
		m.log.Info("metrics are well inside their disk budget: retention lengthened", "used", usage, "budget", budget, "from", cur, "to", next)
	}
	if err := saveRetention(m.cfg, next); err != nil {
		m.log.Warn("cannot keep the effective retention", "err", err)
	}
	select {
	case m.retune <- next:
	default:
	}
}

// budgetLoop checks the budget every interval until ctx ends.
func (m *Metrics) budgetLoop(ctx context.Context) {
	if m.cfg.DiskBudget <= 0 {
		return
	}
	t := time.NewTicker(m.cfg.BudgetCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.checkBudget(m.cfg.DiskBudget)
		}
	}
}

// Run implements supervise.Component: it runs VictoriaMetrics until ctx ends and returns nil
// then, or an error when it keeps dying. A retention change restarts it with the new flag.
func (m *Metrics) Run(ctx context.Context) error {
	bctx, stopBudget := context.WithCancel(ctx)
	defer stopBudget()
	go m.budgetLoop(bctx)
	for {
		child := m.currentChild()
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- child.Run(cctx) }()
		select {
		case <-ctx.Done():
			cancel()
			<-done
			return nil
		case err := <-done:
			cancel()
			return err
		case r := <-m.retune:
			cancel()
			if err := <-done; err != nil && ctx.Err() == nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			if err := m.replaceChild(r); err != nil {
				return fmt.Errorf("metrics: cannot restart VictoriaMetrics with retention %s: %w", r, err)
			}
		}
	}
}
